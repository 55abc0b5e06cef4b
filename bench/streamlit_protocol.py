"""A session of the dashboard without a browser: Streamlit's own messages over its websocket.

What a browser tab does for the server, and nothing it does for itself: it opens a page (one script
run), uploads a file the way the file uploader does (asks for an upload URL, PUTs the file with the
session's XSRF token, re-runs the script with the uploader's new state) and fetches every picture the
run sends, as a browser fetches its media. Nothing is drawn, so the client's own CPU is a few
milliseconds per run, and a load of several sessions measures the server alone, as a room of people
on their own machines would load it.

Used by ``bench/bench_load_server.py``; it speaks the protocol of the pinned Streamlit (its
``streamlit.proto`` messages).
"""

from __future__ import annotations

import http.cookies
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.sync.client import connect

XSRF_COOKIE = "_streamlit_xsrf"


@dataclass
class RunRecord:
    """One script run as the client saw it: seconds from its start until the script finished and until
    every picture it sent was fetched, when the first picture whose caption holds ``marker`` was fetched,
    and what the run drew."""

    finished_s: float = 0.0
    done_s: float = 0.0
    marker_s: float | None = None
    messages: int = 0
    elements: dict[str, int] = field(default_factory=dict)
    images: int = 0
    errors: list[str] = field(default_factory=list)
    status: str = ""


class ProtocolSession:
    """One session of the server at ``url`` on ``page`` (its URL path name, "" for the home page)."""

    def __init__(self, url: str, page: str = "", timeout: float = 120.0) -> None:
        self.url, self.page, self.timeout = url.rstrip("/"), page, timeout
        self.xsrf = self._xsrf_token()
        host = self.url.split("://", 1)[1]
        self.ws = connect(
            f"ws://{host}/_stcore/stream",
            subprotocols=["streamlit", self.xsrf],  # the browser passes its XSRF token this way
            additional_headers={"Cookie": f"{XSRF_COOKIE}={self.xsrf}"},
            origin=self.url,
            max_size=None,
            open_timeout=timeout,
        )
        self.session_id = ""
        self.page_hash = ""
        self.widgets: dict[str, str] = {}  # widget kind -> the id of the first one drawn

    def _xsrf_token(self) -> str:
        """The XSRF cookie the server sets on its health check, as a browser gets it with the page."""
        with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=self.timeout) as response:
            for header in response.headers.get_all("Set-Cookie") or []:
                cookie = http.cookies.SimpleCookie(header)
                if XSRF_COOKIE in cookie:
                    return cookie[XSRF_COOKIE].value
        raise RuntimeError("the server set no XSRF cookie (is server.enableXsrfProtection off?)")

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> ProtocolSession:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _send(self, message: BackMsg) -> None:
        self.ws.send(message.SerializeToString())

    def _receive(self) -> ForwardMsg:
        message = ForwardMsg()
        message.ParseFromString(self.ws.recv(timeout=self.timeout))
        return message

    def run(self, widgets: list | None = None, marker: str | None = None) -> RunRecord:
        """Run the page's script with these widget states (``WidgetState`` messages; the others keep
        their defaults) and wait until it has finished and every picture it sent is fetched."""
        message = BackMsg()
        state = message.rerun_script
        state.query_string = ""
        state.page_name = self.page
        if self.page_hash:
            state.page_script_hash = self.page_hash
        state.widget_states.widgets.extend(widgets or [])
        started = time.perf_counter()
        self._send(message)
        return self._collect(started, marker)

    def _collect(self, started: float, marker: str | None) -> RunRecord:
        record = RunRecord()
        while True:
            message = self._receive()
            record.messages += 1
            kind = message.WhichOneof("type")
            if kind == "new_session":
                self.session_id = message.new_session.initialize.session_id
            elif kind == "navigation":  # the page being run (the app declares its pages with st.navigation)
                self.page_hash = message.navigation.page_script_hash
            elif kind == "delta" and message.delta.WhichOneof("type") == "new_element":
                self._element(message.delta.new_element, record, started, marker)
            elif kind == "script_finished":
                record.status = ForwardMsg.ScriptFinishedStatus.Name(message.script_finished)
                record.finished_s = time.perf_counter() - started
                break
        record.done_s = time.perf_counter() - started
        if record.status != "FINISHED_SUCCESSFULLY":
            record.errors.append(f"the script ended with {record.status}")
        return record

    def _element(self, element: object, record: RunRecord, started: float, marker: str | None) -> None:
        kind = element.WhichOneof("type")  # type: ignore[attr-defined]
        record.elements[kind] = record.elements.get(kind, 0) + 1
        if kind in ("file_uploader", "slider", "selectbox", "multiselect", "radio", "checkbox"):
            self.widgets.setdefault(kind, getattr(element, kind).id)
        elif kind == "exception":
            record.errors.append(element.exception.message)  # type: ignore[attr-defined]
        elif kind == "alert" and element.alert.format == 1:  # type: ignore[attr-defined]  # ERROR
            record.errors.append(element.alert.body)  # type: ignore[attr-defined]
        elif kind == "imgs":
            for image in element.imgs.imgs:  # type: ignore[attr-defined]
                self._fetch(image.url)
                record.images += 1
                if marker and record.marker_s is None and marker in image.caption:
                    record.marker_s = time.perf_counter() - started

    def _fetch(self, path: str) -> None:
        target = path if path.startswith("http") else f"{self.url}{path}"
        with urllib.request.urlopen(target, timeout=self.timeout) as response:
            response.read()

    def upload(self, path: Path, marker: str | None = None) -> RunRecord:
        """Upload ``path`` to the page's first file uploader, as the browser's uploader does, and run the
        script with it. Times count from the request for an upload URL."""
        uploader = self.widgets.get("file_uploader")
        if not uploader:
            raise RuntimeError("the page drew no file uploader; run() it first")
        data = path.read_bytes()
        started = time.perf_counter()
        request = BackMsg()
        request_id = uuid.uuid4().hex
        request.file_urls_request.request_id = request_id
        request.file_urls_request.file_names.append(path.name)
        request.file_urls_request.session_id = self.session_id
        self._send(request)
        while True:
            message = self._receive()
            if message.WhichOneof("type") == "file_urls_response":
                response = message.file_urls_response
                if response.response_id == request_id:
                    break
        if response.error_msg:
            raise RuntimeError(f"no upload URL: {response.error_msg}")
        urls = response.file_urls[0]
        self._put(urls.upload_url, path.name, data)
        message = BackMsg()
        state = message.rerun_script
        state.page_name = self.page
        state.page_script_hash = self.page_hash
        widget = state.widget_states.widgets.add()
        widget.id = uploader
        info = widget.file_uploader_state_value.uploaded_file_info.add()
        info.name, info.size, info.file_id = path.name, len(data), urls.file_id
        info.file_urls.CopyFrom(urls)
        self._send(message)
        return self._collect(started, marker)

    def _put(self, upload_url: str, name: str, data: bytes) -> None:
        boundary = uuid.uuid4().hex
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        target = upload_url if upload_url.startswith("http") else f"{self.url}{upload_url}"
        request = urllib.request.Request(
            target,
            data=body,
            method="PUT",
            headers={
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "X-Xsrftoken": self.xsrf,
                "Cookie": f"{XSRF_COOKIE}={self.xsrf}",
                "Origin": self.url,
            },
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            response.read()
