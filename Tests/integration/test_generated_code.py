"""The committed protobuf-c code is what scripts/gen-proto makes from proto/."""
import filecmp
import os
import shutil
import subprocess
import tempfile

from harness import ROOT


def test_generated_code_matches_proto():
    d = tempfile.mkdtemp()
    copy = os.path.join(d, "repo")
    os.makedirs(copy)
    for part in ("proto", "scripts", "Sources/CExtProcProto"):
        shutil.copytree(os.path.join(ROOT, part), os.path.join(copy, part))
    subprocess.run([os.path.join(copy, "scripts", "gen-proto")], check=True, capture_output=True)
    a, b = os.path.join(ROOT, "Sources", "CExtProcProto"), os.path.join(copy, "Sources", "CExtProcProto")
    mismatches = []
    for root, _, files in os.walk(b):
        for f in files:
            rel = os.path.relpath(os.path.join(root, f), b)
            if not filecmp.cmp(os.path.join(a, rel), os.path.join(b, rel), shallow=False):
                mismatches.append(rel)
    assert mismatches == [], f"stale generated code, run scripts/gen-proto: {mismatches}"
    assert len([f for _, _, fs in os.walk(b) for f in fs if f.endswith(".c")]) == 5
