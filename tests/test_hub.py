"""The local git hub: branches from main, one commit per checkpoint, newest first, consistent after a crash."""
import subprocess

import pytest

from common.errors import UserError
import checkpoint_hub as hub_mod
from checkpoint_hub import open_hub
from checkpoint_hub.hf import HFHub
from checkpoint_hub.local import LocalHub


def ckpt(tmp_path, name, step):
    d = tmp_path / f"{name}-{step}"
    d.mkdir()
    (d / "config.json").write_text('{"step": %d}' % step)
    (d / "training_state.json").write_text('{"step": %d}' % step)
    return d


def test_push_list_resolve_materialize(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    hub = open_hub(str(tmp_path / "repo"), create=True)
    assert hub.branches() == ["main"] and [c.message for c in hub.commits("main")] == ["initial commit"]
    s1 = hub.push("run-a", ckpt(tmp_path, "a", 1), "step 1")
    s2 = hub.push("run-a", ckpt(tmp_path, "a", 2), "step 2")
    assert hub.branches() == ["main", "run-a"]
    assert [c.sha for c in hub.commits("run-a")][:2] == [s2, s1]
    assert hub.commits("run-a")[-1].message == "initial commit"  # the run branch starts from main
    assert hub.resolve("run-a") == s2 and hub.resolve("run-a", s1[:7]) == s1
    folder = hub.materialize(s1)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "training_state.json"]
    assert hub.read_file(s2, "training_state.json") == b'{"step": 2}'
    with pytest.raises(UserError, match="is not on branch 'run-a'"):
        hub.resolve("run-a", "deadbeef")
    with pytest.raises(UserError, match="no branch 'nope'.*main, run-a"):
        hub.commits("nope")


def test_merge_into_main_fast_forwards_then_merges(tmp_path):
    hub = open_hub(str(tmp_path / "repo"), create=True)
    a = hub.push("a", ckpt(tmp_path, "a", 1), "step 1")
    b = hub.push("b", ckpt(tmp_path, "b", 5), "step 5")  # branched from the initial main
    assert hub.merge_into_main("a", a, "gate a") == a  # main was an ancestor: fast-forward
    merged = hub.merge_into_main("b", b, "gate b")
    assert merged == hub.resolve("main") and merged != b
    assert hub.read_file(merged, "training_state.json") == b'{"step": 5}'


def test_crash_mid_push_leaves_the_repo_consistent(tmp_path, monkeypatch):
    hub = open_hub(str(tmp_path / "repo"), create=True)
    s1 = hub.push("run", ckpt(tmp_path, "r", 1), "step 1")
    real = LocalHub._git

    def dying(self, *args, **kw):
        if args and args[0] == "update-ref":
            raise KeyboardInterrupt  # killed after the objects were written, before the ref moved
        return real(self, *args, **kw)

    monkeypatch.setattr(LocalHub, "_git", dying)
    with pytest.raises(KeyboardInterrupt):
        hub.push("run", ckpt(tmp_path, "r", 2), "step 2")
    monkeypatch.setattr(LocalHub, "_git", real)
    assert hub.resolve("run") == s1
    fsck = subprocess.run(["git", "--git-dir", str(tmp_path / "repo"), "fsck", "--no-dangling"], capture_output=True)
    assert fsck.returncode == 0
    assert hub.push("run", ckpt(tmp_path, "r", 3), "step 3") != s1


def test_not_a_hub_and_missing_hub(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file").write_text("x")
    with pytest.raises(UserError, match="exists but is not a hub repository"):
        open_hub(str(tmp_path / "other"), create=True)
    with pytest.raises(UserError, match="no hub repository"):
        open_hub(str(tmp_path / "missing"))
    hub = open_hub(str(tmp_path / "repo"), create=True)
    with pytest.raises(UserError, match="not a valid branch name"):
        hub.push("bad..name", ckpt(tmp_path, "x", 1), "step 1")


def test_hf_backend_goes_through_huggingface_hub(monkeypatch, tmp_path):
    """The hf:// backend needs network; here it stops at the interface: the HfApi calls it makes."""
    calls = []

    class FakeApi:
        def __getattr__(self, name):
            def record(*args, **kwargs):
                calls.append(name)
                if name == "upload_folder":
                    return type("Info", (), {"oid": "abc123"})()
                return None
            return record

    monkeypatch.setattr("huggingface_hub.HfApi", FakeApi)
    hub = open_hub("hf://org/codeparrot-tiny", create=True)
    assert isinstance(hub, HFHub) and hub.url == "hf://org/codeparrot-tiny"
    assert hub.push("run", ckpt(tmp_path, "h", 1), "step 1") == "abc123"
    assert calls == ["create_repo", "create_branch", "upload_folder"]
    assert hasattr(hub_mod, "check_repo")
