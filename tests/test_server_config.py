"""The dashboard server's settings: localhost only unless configured, XSRF protection on, an explicit
upload limit that the engine enforces too; checked in the config file and on a real server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from page_harness import readings_tables, run, run_page

from cxrcore.io import MAX_UPLOAD_MB, UploadTooLargeError, check_upload_size, read_upload

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())


def test_the_config_keeps_the_server_local_protected_and_limited() -> None:
    server = CONFIG["server"]
    assert server["address"] == "localhost"
    assert server["enableXsrfProtection"] is True and server["enableCORS"] is True
    assert server["maxUploadSize"] == MAX_UPLOAD_MB == 64
    assert CONFIG["browser"]["gatherUsageStats"] is False
    assert CONFIG["client"]["showErrorDetails"] == "none"  # no tracebacks (paths, values) for visitors


def test_the_config_keeps_per_run_overheads_off_the_hot_path() -> None:
    # A full garbage collection after every script run (about 0.8 s with PyTorch loaded) and a watcher
    # walking every imported module's file for each new session slowed every upload and slider move.
    assert CONFIG["runner"]["postScriptGC"] is False
    assert CONFIG["server"]["fileWatcherType"] == "none"


def test_the_engine_refuses_bytes_over_the_upload_limit_before_reading_them() -> None:
    check_upload_size(MAX_UPLOAD_MB << 20)  # exactly the limit is accepted
    with pytest.raises(UploadTooLargeError, match=r"the file is 64.0 MB, over this dashboard's upload limit"):
        check_upload_size((MAX_UPLOAD_MB << 20) + 1)
    with pytest.raises(UploadTooLargeError, match="upload limit of 1 MB"):
        read_upload(b"\x89PNG\r\n\x1a\n" + bytes(1 << 20), limit_mb=1)


@pytest.mark.slow  # 64 MB through AppTest
def test_the_explain_page_names_the_limit_for_a_larger_file(workspace_home: Path) -> None:
    at = run_page("pages/5_Explain.py")
    uploader = at.file_uploader(key="explain_upload")
    assert "up to 64 MB" in uploader.label
    uploader.upload("huge.dcm", bytes((MAX_UPLOAD_MB << 20) + 1))
    run(at, expect_error="over this dashboard's upload limit of 64 MB")
    assert len(readings_tables(at)) == 0 and len(at.get("image")) == 0


def _listening(port: int) -> list[str]:
    """Local addresses of the sockets listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.append(address)
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


IPV4_LOOPBACK, IPV6_LOOPBACK = "0100007F", "00000000000000000000000001000000"  # as /proc/net writes them


@pytest.mark.slow  # starts the real server (about 5 s)
def test_the_real_server_listens_on_localhost_only_and_wants_the_xsrf_token(workspace_home: Path) -> None:
    if not Path("/proc/net/tcp").is_file():
        pytest.skip("needs Linux's /proc/net/tcp to list listening sockets")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "Home.py", "--server.port", str(port)],
        cwd=ROOT,
        env={**os.environ, "CXR_HOME": str(workspace_home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        listening = _listening(port)
        assert listening and set(listening) <= {IPV4_LOOPBACK, IPV6_LOOPBACK}, listening
        upload = urllib.request.Request(f"{url}/_stcore/upload_file/session/file", data=b"x", method="PUT")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(upload, timeout=10)
        assert refused.value.code == 403  # no XSRF token, no upload (without the protection: 400)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
