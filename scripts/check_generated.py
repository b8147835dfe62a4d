"""Fails when the checked-in stubs differ from what the proto generates (run by `make test`)."""

from __future__ import annotations

import filecmp
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = "protos/mailaccounts/v1/account_service.proto"
GENERATED = ROOT / "clients/python/mailaccounts/v1"
NAMES = [
    "account_service_pb2.py",
    "account_service_pb2.pyi",
    "account_service_pb2_grpc.py",
    "account_service_pb2_grpc.pyi",
]


def main() -> int:
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [
                sys.executable, "-m", "grpc_tools.protoc", "-I", "protos",
                f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
                f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
                f"--python_out={out}", f"--grpc_python_out={out}",
                f"--mypy_out={out}", f"--mypy_grpc_out={out}", PROTO,
            ],
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        stale = [
            name
            for name in NAMES
            if not filecmp.cmp(Path(out, "mailaccounts/v1", name), GENERATED / name, shallow=False)
        ]
    if stale:
        print(f"generated stubs are out of date ({', '.join(stale)}): run `make proto`")
        return 1
    print("generated stubs match the proto")
    return 0


if __name__ == "__main__":
    sys.exit(main())
