"""DICOM node settings: the remote nodes the app talks to and its own AE title and port.

A node is either a DIMSE peer (AE title, host, port) or a DICOMweb server (base URL of its
QIDO/WADO/STOW services). The app's own side (:class:`LocalAE`) names the AE title it calls
with and listens as, the port of its storage listener, and which calling AE titles the
listener accepts besides the configured nodes'.

The settings are one JSON file, ``<config dir>/dicom-nodes.json``
(:func:`fetal_viewer.core.appdirs.config_dir`, moved by ``FETAL_VIEWER_CONFIG_DIR``),
written atomically. Every value is checked on load and on change, so a hand-edited file
with a bad port or an AE title of 17 characters is refused with what to fix.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from fetal_viewer.errors import NetworkError

CONFIG_NAME = "dicom-nodes.json"
CONFIG_FORMAT = 1
DEFAULT_AE_TITLE = "FETALVIEWER"
DEFAULT_PORT = 11112
DEFAULT_TIMEOUT_S = 30.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_ae_title(value: str, what: str = "AE title") -> str:
    """``value`` as a valid AE title (1-16 characters of printable ASCII, no backslash,
    not only spaces; leading/trailing spaces dropped), or :class:`NetworkError`."""
    text = str(value).strip()
    bad = [c for c in text if not (" " <= c <= "~") or c == "\\"]
    if not text or len(text) > 16 or bad:
        why = (
            "it is empty"
            if not text
            else f"it has {len(text)} characters"
            if len(text) > 16
            else f"it contains {''.join(sorted(set(bad)))!r}"
        )
        raise NetworkError(
            f"{value!r} is not a valid {what}.",
            why=f"{why}; an AE title has 1 to 16 characters of printable ASCII, no backslash",
            fix="Use the AE title exactly as the node's administrator configured it, "
            "e.g. ORTHANC or US_ROOM_2.",
        )
    return text


def check_port(value: Any, what: str = "port") -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        port = -1
    if not 1 <= port <= 65535 or str(value).strip() not in (str(port), f"{port}.0"):
        raise NetworkError(
            f"{value!r} is not a valid {what}.",
            why="a TCP port is a whole number from 1 to 65535",
            fix="Use the port the node listens on (DICOM: often 104 or 11112; Orthanc: 4242).",
        )
    return port


@dataclass(frozen=True)
class Node:
    """One remote node: a DIMSE peer (``ae_title``, ``host``, ``port``) or a DICOMweb
    server (``url``)."""

    name: str
    ae_title: str = ""
    host: str = ""
    port: int = 0
    url: str = ""
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def kind(self) -> str:
        """``"dicomweb"`` or ``"dimse"``."""
        return "dicomweb" if self.url else "dimse"

    @property
    def address(self) -> str:
        """How messages name the node: ``name (AE@host:port)`` or ``name (URL)``."""
        where = self.url if self.url else f"{self.ae_title}@{self.host}:{self.port}"
        return f"{self.name} ({where})"

    def checked(self) -> Node:
        """A copy with every field validated and normalised, or :class:`NetworkError`."""
        if not _NAME.match(self.name or ""):
            raise NetworkError(
                f"{self.name!r} is not a valid node name.",
                why="a node name is 1-64 letters, digits, '.', '_' or '-', starting with a "
                "letter or digit",
                fix="Choose a short name such as pacs or us-room-2.",
            )
        try:
            timeout = float(self.timeout_s)
        except (TypeError, ValueError):
            timeout = -1.0
        if not 0.1 <= timeout <= 3600:
            raise NetworkError(
                f"Timeout {self.timeout_s!r} s of node {self.name} is out of range.",
                fix="Use 0.1 to 3600 seconds.",
            )
        if self.url:
            parsed = urlparse(self.url)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise NetworkError(
                    f"{self.url!r} is not a DICOMweb URL.",
                    why="it needs http:// or https:// and a host",
                    fix="Give the DICOMweb root, e.g. http://pacs:8042/dicom-web",
                )
            if self.ae_title or self.host or self.port:
                raise NetworkError(
                    f"Node {self.name} has both a URL and an AE title/host/port.",
                    fix="Make one node for DICOMweb (URL only) and another for DIMSE.",
                )
            return replace(self, url=self.url.rstrip("/"), timeout_s=timeout)
        if not self.host or any(c.isspace() for c in self.host):
            raise NetworkError(
                f"Node {self.name} has no valid host ({self.host!r}).",
                fix="Give the host name or IP address of the node, e.g. 10.0.0.5 or pacs.local.",
            )
        return replace(
            self,
            ae_title=check_ae_title(self.ae_title, f"AE title of node {self.name}"),
            port=check_port(self.port, f"port of node {self.name}"),
            timeout_s=timeout,
        )


@dataclass(frozen=True)
class LocalAE:
    """The app's own side: the AE title it calls with and listens as, the listener's port
    and address, and calling AE titles it accepts besides the configured nodes'."""

    ae_title: str = DEFAULT_AE_TITLE
    port: int = DEFAULT_PORT
    bind_address: str = "0.0.0.0"
    accept_callers: tuple[str, ...] = ()

    def checked(self) -> LocalAE:
        return replace(
            self,
            ae_title=check_ae_title(self.ae_title, "own AE title"),
            port=check_port(self.port, "listener port"),
            bind_address=str(self.bind_address).strip() or "0.0.0.0",
            accept_callers=tuple(
                check_ae_title(c, "accepted calling AE title") for c in self.accept_callers
            ),
        )


@dataclass(frozen=True)
class NodeConfig:
    local: LocalAE = field(default_factory=LocalAE)
    nodes: tuple[Node, ...] = ()

    def get(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        known = ", ".join(n.name for n in self.nodes) or "none yet"
        raise NetworkError(
            f"No DICOM node is named {name!r}.",
            why=f"configured nodes: {known}",
            fix="List them with `fetal-viewer pacs nodes list`; add one with "
            "`fetal-viewer pacs nodes add NAME --ae AE --host HOST --port PORT` (or --url).",
        )

    def with_node(self, node: Node, replace_existing: bool = False) -> NodeConfig:
        node = node.checked()
        others = tuple(n for n in self.nodes if n.name != node.name)
        if len(others) != len(self.nodes) and not replace_existing:
            raise NetworkError(
                f"A node named {node.name!r} exists already.",
                fix="Choose another name, or remove the old node first.",
            )
        return replace(self, nodes=(*others, node))

    def without_node(self, name: str) -> NodeConfig:
        self.get(name)
        return replace(self, nodes=tuple(n for n in self.nodes if n.name != name))

    def allowed_callers(self) -> frozenset[str]:
        """Calling AE titles the listener accepts: every DIMSE node's and the extra ones."""
        titles = {n.ae_title for n in self.nodes if n.kind == "dimse"}
        return frozenset(titles | set(self.local.accept_callers))

    def to_json(self) -> str:
        nodes = []
        for n in self.nodes:
            d = {k: v for k, v in asdict(n).items() if v not in ("", 0)}
            nodes.append(d)
        local = asdict(self.local)
        local["accept_callers"] = list(self.local.accept_callers)
        doc = {"format": CONFIG_FORMAT, "local": local, "nodes": nodes}
        return json.dumps(doc, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, path: Path | None = None) -> NodeConfig:
        def bad(why: str) -> NetworkError:
            return NetworkError(
                "The DICOM node settings cannot be read.",
                why=why,
                fix="Fix or delete the file; `fetal-viewer pacs nodes list` shows what is "
                "configured once it reads.",
                path=path,
            )

        try:
            doc = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise bad(f"not valid JSON: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("nodes", []), list):
            raise bad("expected an object with 'local' and a 'nodes' list")
        if doc.get("format", CONFIG_FORMAT) != CONFIG_FORMAT:
            raise bad(f"format {doc.get('format')!r}; this version reads {CONFIG_FORMAT}")
        try:
            raw_local = dict(doc.get("local", {}))
            raw_local["accept_callers"] = tuple(raw_local.get("accept_callers", ()))
            local = LocalAE(**raw_local).checked()
            nodes = tuple(Node(**dict(n)).checked() for n in doc.get("nodes", []))
        except NetworkError as exc:
            exc.path = str(path) if path else None
            raise
        except (TypeError, ValueError) as exc:
            raise bad(f"unexpected entry: {exc}") from exc
        names = [n.name for n in nodes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise bad(f"node names used twice: {', '.join(dupes)}")
        return cls(local=local, nodes=nodes)


def config_path() -> Path:
    from fetal_viewer.core.appdirs import config_dir

    return config_dir() / CONFIG_NAME


def load_config(path: Path | None = None) -> NodeConfig:
    """The saved settings, or the defaults when there is no file yet."""
    path = path or config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return NodeConfig()
    except OSError as exc:
        raise NetworkError(
            "The DICOM node settings cannot be read.",
            why=f"{type(exc).__name__}: {exc.strerror or exc}",
            fix="Check that the file is readable.",
            path=path,
        ) from exc
    return NodeConfig.from_json(text, path)


def save_config(config: NodeConfig, path: Path | None = None) -> Path:
    """Write the settings atomically (a crash leaves the old file or the new one)."""
    path = path or config_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".dicom-nodes.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(config.to_json())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise NetworkError(
            "The DICOM node settings cannot be saved.",
            why=f"{type(exc).__name__}: {exc.strerror or exc}",
            fix="Check that the settings folder is writable (or set FETAL_VIEWER_CONFIG_DIR).",
            path=path,
        ) from exc
    return path
