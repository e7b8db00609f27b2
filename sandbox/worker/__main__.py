"""`python3 -u -I /opt/sandbox/worker`: the directory is run as a script, so its parent goes on sys.path and the
package is imported as `worker` (on the host, the process backend runs sandbox/worker the same way)."""
import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from worker.loop import main  # noqa: E402

main()
