"""One module per task suite; each registers itself with `tasks.registry.suite`. Data ships in `tasks/data/`."""
