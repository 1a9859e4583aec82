"""The committed generated modules match protos/ (run `make protos` when this fails)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_generated_modules_are_fresh(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "protos" / "generate.py"), "--out", str(tmp_path)], check=True,
                   capture_output=True)
    committed = ROOT / "labs_core" / "proto"
    fresh = {p.name: p.read_text() for p in tmp_path.iterdir() if p.suffix in (".py", ".pyi")}
    current = {p.name: p.read_text() for p in committed.iterdir()
               if p.suffix in (".py", ".pyi") and p.name != "__init__.py"}
    assert sorted(fresh) == sorted(current), "proto modules added or removed: run `make protos`"
    stale = [name for name in fresh if fresh[name] != current[name]]
    assert not stale, f"stale generated modules {stale}: run `make protos`"


def test_every_service_is_documented():
    for proto in (ROOT / "protos" / "labs" / "v1").glob("*.proto"):
        lines = proto.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.startswith("service "):
                assert lines[i - 1].startswith("//"), f"{proto.name}: {line} has no comment"
