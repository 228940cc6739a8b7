"""``fetal-viewer pacs``: DICOM nodes, query/retrieve, the listener, sending, and the AI
result as DICOM (structured report + heatmap secondary captures).

Research use only; not for clinical use.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from fetal_viewer import INTENDED_USE
from fetal_viewer.cli.options import ranged
from fetal_viewer.core.runtime.backends import CHOICES as BACKEND_CHOICES
from fetal_viewer.errors import NetworkError, StudyLoadError


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "pacs",
        help="DICOM nodes: verify, find, retrieve, listen, send, and AI results as DICOM",
        description=(
            "Talk to PACS and modalities: configure nodes (DIMSE or DICOMweb), verify them, "
            "search studies, retrieve one into the local cache (C-GET, C-MOVE or WADO-RS), "
            "receive pushes with a storage listener, send files, and write the AI result of "
            "a study as a DICOM structured report with heatmap secondary captures. Node "
            "settings live in <config dir>/dicom-nodes.json (FETAL_VIEWER_CONFIG_DIR)."
        ),
    )
    sub = p.add_subparsers(dest="pacs_command", metavar="ACTION", required=True)

    nodes = sub.add_parser("nodes", help="list, add or remove nodes; set our own AE title")
    nsub = nodes.add_subparsers(dest="nodes_command", metavar="ACTION", required=True)
    n = nsub.add_parser("list", help="show our AE title and port, and every node")
    n.add_argument("--json", action="store_true")
    n.set_defaults(func=run_nodes_list)
    n = nsub.add_parser(
        "add",
        help="add a node: --ae/--host/--port for DIMSE, or --url for DICOMweb",
    )
    n.add_argument("name", help="short name used in commands, e.g. pacs")
    n.add_argument("--ae", default="", help="the node's AE title")
    n.add_argument("--host", default="", help="host name or IP address")
    n.add_argument("--port", type=int, default=0, help="DICOM port")
    n.add_argument("--url", default="", help="DICOMweb root, e.g. http://pacs:8042/dicom-web")
    n.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    n.add_argument("--replace", action="store_true", help="replace a node of that name")
    n.set_defaults(func=run_nodes_add)
    n = nsub.add_parser("remove", help="remove a node")
    n.add_argument("name")
    n.set_defaults(func=run_nodes_remove)
    n = nsub.add_parser("local", help="set our AE title, listener port and accepted callers")
    n.add_argument("--ae", default=None, help="our AE title (default FETALVIEWER)")
    n.add_argument("--port", type=int, default=None, help="listener port (default 11112)")
    n.add_argument("--bind", default=None, help="listener address (default 0.0.0.0)")
    n.add_argument(
        "--accept",
        nargs="*",
        default=None,
        metavar="AE",
        help="calling AE titles the listener accepts besides the nodes' (replaces the list)",
    )
    n.set_defaults(func=run_nodes_local)

    v = sub.add_parser("verify", help="C-ECHO a DIMSE node, or query a DICOMweb node once")
    v.add_argument("node")
    v.set_defaults(func=run_verify)

    f = sub.add_parser("find", help="search studies (or a study's series with --series)")
    f.add_argument("node")
    f.add_argument("--patient-id", default="")
    f.add_argument("--name", default="", help="patient name; matches anywhere unless it has * or ?")
    f.add_argument("--date", default="", help="study date or range: 20240101-20240131, A-, -B")
    f.add_argument("--accession", default="")
    f.add_argument("--modality", default="", help="e.g. US")
    f.add_argument("--series", metavar="STUDY_UID", default=None, help="list this study's series")
    f.add_argument(
        "--show-phi", action="store_true", help="show patient IDs, names and accession numbers"
    )
    f.add_argument("--json", action="store_true", help="print one JSON document (PHI included)")
    f.set_defaults(func=run_find)

    g = sub.add_parser("get", help="retrieve a study into the local cache (resumes a partial one)")
    g.add_argument("node")
    g.add_argument("study_uid", metavar="STUDY_UID")
    g.add_argument(
        "--move",
        action="store_true",
        help="C-MOVE to our AE title (the node must know our AE, host and port) instead of C-GET",
    )
    g.add_argument("--out", type=Path, default=None, help="folder of studies (default: the cache)")
    g.add_argument("--json", action="store_true")
    g.add_argument("--no-progress", action="store_true")
    g.set_defaults(func=run_get)

    li = sub.add_parser("listen", help="receive what modalities and PACS push (Ctrl-C stops)")
    li.add_argument("--port", type=int, default=None, help="port (default: the configured one)")
    li.add_argument("--ae", default=None, help="our AE title (default: the configured one)")
    li.add_argument("--bind", default=None, help="address (default: the configured one)")
    li.add_argument(
        "--any-caller",
        action="store_true",
        help="accept any calling AE title (default: only the nodes' and the accepted list)",
    )
    li.add_argument("--inbox", type=Path, default=None, help="folder (default: the user inbox)")
    li.set_defaults(func=run_listen)

    s = sub.add_parser("send", help="send DICOM files or folders to a node (C-STORE / STOW-RS)")
    s.add_argument("node")
    s.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    s.add_argument("--json", action="store_true")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=run_send)

    r = sub.add_parser(
        "report",
        help="analyse DICOM studies and write the result as DICOM SR + heatmap captures",
        description=(
            "Classify every frame of each DICOM study under PATH, and write the result as a "
            "Comprehensive SR (per-class probabilities of the study and of each frame, model "
            "name, version and weights sha256) and one secondary capture per key frame with "
            "its heatmap, in new series of the same study. Optionally send them to a node. "
            f"{INTENDED_USE}"
        ),
    )
    r.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    r.add_argument("--out", type=Path, required=True, help="folder for the DICOM objects")
    r.add_argument("--send", metavar="NODE", default=None, help="also send them to this node")
    r.add_argument("--model", type=Path, default=None, help="model card; default: demo model")
    r.add_argument(
        "--key-frames", type=ranged(int, 0), default=4, help="at most this many captures"
    )
    r.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        default="auto",
        help="inference runtime and precision (default auto: measured once per machine)",
    )
    r.add_argument("--json", action="store_true")
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(func=run_report)


def _quiet(args: argparse.Namespace) -> None:
    """pynetdicom logs every refused association as an error; our messages say it better."""
    if not getattr(args, "verbose", False):
        logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)


def _config() -> Any:
    from fetal_viewer.core.net.nodes import load_config

    return load_config()


# ---- nodes --------------------------------------------------------------------------
def run_nodes_list(args: argparse.Namespace) -> int:
    from fetal_viewer.core.net.nodes import config_path

    cfg = _config()
    if args.json:
        doc = json.loads(cfg.to_json())
        doc["path"] = str(config_path())
        print(json.dumps(doc, indent=2))
        return 0
    loc = cfg.local
    accept = ", ".join(loc.accept_callers) or "none besides the nodes'"
    print(f"this computer: AE {loc.ae_title}, listener {loc.bind_address}:{loc.port}")
    print(f"  also accepts calling AE titles: {accept}")
    if not cfg.nodes:
        print("no nodes yet: fetal-viewer pacs nodes add NAME --ae AE --host HOST --port PORT")
    for node in cfg.nodes:
        kind = "DICOMweb" if node.kind == "dicomweb" else "DIMSE"
        print(f"{node.name:<16} {kind:<8} {node.address}  timeout {node.timeout_s:g} s")
    print(f"(settings: {config_path()})")
    return 0


def run_nodes_add(args: argparse.Namespace) -> int:
    from fetal_viewer.core.net.nodes import Node, save_config

    node = Node(
        args.name,
        ae_title=args.ae,
        host=args.host,
        port=args.port,
        url=args.url,
        timeout_s=args.timeout,
    )
    cfg = _config().with_node(node, replace_existing=args.replace)
    path = save_config(cfg)
    print(f"added {cfg.get(args.name).address} to {path}")
    return 0


def run_nodes_remove(args: argparse.Namespace) -> int:
    from fetal_viewer.core.net.nodes import save_config

    save_config(_config().without_node(args.name))
    print(f"removed {args.name}")
    return 0


def run_nodes_local(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from fetal_viewer.core.net.nodes import save_config

    cfg = _config()
    local = cfg.local
    if args.ae is not None:
        local = replace(local, ae_title=args.ae)
    if args.port is not None:
        local = replace(local, port=args.port)
    if args.bind is not None:
        local = replace(local, bind_address=args.bind)
    if args.accept is not None:
        local = replace(local, accept_callers=tuple(args.accept))
    cfg = replace(cfg, local=local.checked())
    save_config(cfg)
    print(
        f"this computer: AE {cfg.local.ae_title}, listener {cfg.local.bind_address}:{cfg.local.port}"
    )
    return 0


# ---- verify / find ----------------------------------------------------------------------
def run_verify(args: argparse.Namespace) -> int:
    from fetal_viewer.core.net.pacs import verify

    _quiet(args)
    cfg = _config()
    node = cfg.get(args.node)
    seconds = verify(node, cfg.local)
    what = "DICOMweb search" if node.kind == "dicomweb" else "C-ECHO"
    print(f"{node.address}: {what} OK in {seconds * 1000:.0f} ms")
    return 0


def _pseudonym(m: Any) -> str:
    from fetal_viewer.core.io import make_pseudonym

    return make_pseudonym(m.patient_id or m.patient_name or m.study_uid)


def run_find(args: argparse.Namespace) -> int:
    from fetal_viewer.core.net.pacs import StudyQuery, find_series, find_studies, parse_date_range

    _quiet(args)
    cfg = _config()
    node = cfg.get(args.node)
    if args.series:
        series = find_series(node, cfg.local, args.series)
        if args.json:
            print(
                json.dumps(
                    {"study_uid": args.series, "series": [s.to_json() for s in series]}, indent=2
                )
            )
            return 0
        for s in series:
            n = "?" if s.n_instances is None else s.n_instances
            print(
                f"{s.number if s.number is not None else '-':>4} {s.modality:<3} {n:>5} inst  {s.description}  {s.series_uid}"
            )
        if not series:
            print("no series")
        return 0
    start, end = parse_date_range(args.date) if args.date else (None, None)
    query = StudyQuery(
        patient_id=args.patient_id,
        patient_name=args.name,
        date_from=start,
        date_to=end,
        accession=args.accession,
        modality=args.modality,
    )
    studies = find_studies(node, cfg.local, query)
    if args.json:
        print(json.dumps({"node": node.name, "studies": [s.to_json() for s in studies]}, indent=2))
        return 0
    for m in studies:
        who = (
            f"{m.patient_id} {m.patient_name} acc {m.accession}" if args.show_phi else _pseudonym(m)
        )
        date = m.study_date.isoformat() if m.study_date else "????-??-??"
        mods = "/".join(m.modalities) or "-"
        n = "?" if m.n_instances is None else m.n_instances
        print(f"{date}  {who}  {mods}  {n} inst  {m.description}  {m.study_uid}")
    print(
        f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'}"
        + (
            ""
            if args.show_phi or not studies
            else " (patients shown by pseudonym; --show-phi shows IDs)"
        )
    )
    return 0


# ---- get ------------------------------------------------------------------------------------
def run_get(args: argparse.Namespace) -> int:
    from fetal_viewer.core.net.retrieve import cache_root, retrieve_study
    from fetal_viewer.core.net.storage import StudyStore
    from fetal_viewer.core.progress import tqdm_progress

    _quiet(args)
    cfg = _config()
    node = cfg.get(args.node)
    store = StudyStore(args.out if args.out is not None else cache_root())
    progress, close = tqdm_progress("retrieve", disable=args.no_progress or args.json)
    try:
        result = retrieve_study(
            node,
            cfg.local,
            args.study_uid,
            store=store,
            method="move" if args.move else "get",
            progress=progress,
        )
    finally:
        close()
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        mb = result.nbytes / 2**20
        rate = mb / result.seconds if result.seconds > 0 else 0.0
        print(
            f"{result.held} of {result.expected if result.expected is not None else '?'} "
            f"instances in {result.folder} ({result.new} new, {result.duplicates} already "
            f"held; {mb:.1f} MiB in {result.seconds:.1f} s, {rate:.1f} MiB/s)"
        )
        if result.conflicts:
            print(
                f"{result.conflicts} differing copies kept aside under {store.root / '.conflicts'}"
            )
    if not result.complete:
        print(
            f"error: the study is incomplete: {result.problem}\n"
            "Fix: run the same command again to fetch what is missing.",
            file=sys.stderr,
        )
        return 1
    return 0


# ---- listen ---------------------------------------------------------------------------------
def run_listen(args: argparse.Namespace) -> int:
    import signal
    import threading
    from dataclasses import replace

    from fetal_viewer.core.net.listener import Listener, Received
    from fetal_viewer.core.net.pacs import inbox_root
    from fetal_viewer.core.net.storage import StudyStore

    _quiet(args)
    cfg = _config()
    local = cfg.local
    if args.port is not None:
        local = replace(local, port=args.port)
    if args.ae is not None:
        local = replace(local, ae_title=args.ae)
    if args.bind is not None:
        local = replace(local, bind_address=args.bind)
    local = local.checked()
    inbox = StudyStore(args.inbox if args.inbox is not None else inbox_root(), durable=True)
    allowed = None if args.any_caller else cfg.allowed_callers()
    lock = threading.Lock()

    def arrived(r: Received) -> None:
        what = {
            "stored": "stored",
            "duplicate": "duplicate, dropped",
            "conflict": "differs from the held copy, kept aside",
        }[r.item.outcome.value]
        with lock:
            print(f"from {r.calling_ae}: {r.item.path} ({what})", flush=True)

    listener = Listener(local, inbox, allowed, on_received=arrived)
    listener.start()
    callers = (
        "any calling AE title"
        if allowed is None
        else ", ".join(sorted(allowed)) or "no calling AE title yet (add nodes, or --any-caller)"
    )
    print(
        f"listening as {local.ae_title} on {local.bind_address}:{listener.port}; inbox "
        f"{inbox.root}; accepting {callers}. Ctrl-C stops.",
        flush=True,
    )
    stop = threading.Event()
    # Ctrl-C and a service manager's SIGTERM stop it, even when started with SIGINT ignored
    # (a background job of a non-interactive shell), where Python raises no KeyboardInterrupt
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    finally:
        listener.stop()
    t = listener.tally
    print(
        f"stopped: {t.stored} stored, {t.duplicates} duplicates dropped, {t.conflicts} kept "
        f"aside, {t.refused} refused",
        flush=True,
    )
    if t.disk_error is not None:
        print(f"error: instances were refused: {t.disk_error.strerror}", file=sys.stderr)
        return 1
    return 0


# ---- send -----------------------------------------------------------------------------------
def run_send(args: argparse.Namespace) -> int:
    from fetal_viewer.core.net.pacs import send
    from fetal_viewer.core.progress import tqdm_progress

    _quiet(args)
    cfg = _config()
    node = cfg.get(args.node)
    progress, close = tqdm_progress("send", disable=args.no_progress or args.json)
    try:
        result = send(node, cfg.local, list(args.paths), progress=progress)
    finally:
        close()
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(f"sent {result.sent} instance(s) to {node.address} in {result.seconds:.1f} s")
        for what, why in result.failed:
            print(f"  not sent: {what}: {why}", file=sys.stderr)
    if result.sent == 0 and not result.failed:
        raise NetworkError("Nothing to send.", fix="Give DICOM files or folders holding them.")
    return 1 if result.failed else 0


# ---- report ---------------------------------------------------------------------------------
def run_report(args: argparse.Namespace) -> int:
    from fetal_viewer.cli.predict import _model_card
    from fetal_viewer.core.io import open_paths
    from fetal_viewer.core.model.aggregation import NO_ASSESSABLE
    from fetal_viewer.core.model.checkpoint import load_checkpoint
    from fetal_viewer.core.model.predictor import Predictor
    from fetal_viewer.core.progress import tqdm_progress
    from fetal_viewer.core.report_dicom.analysis import analyse_study
    from fetal_viewer.core.report_dicom.objects import build_results, read_sources, write_results

    _quiet(args)
    node = None
    cfg = None
    if args.send:
        cfg = _config()
        node = cfg.get(args.send)  # fail before the analysis, not after
    opened = open_paths(list(args.paths))
    for problem in opened.problems:
        print(f"warning: {problem.message}", file=sys.stderr)
    studies = [(p, s) for p in opened.patients for s in p.studies]
    if not studies:
        raise StudyLoadError(
            "No DICOM study was found in the given paths.",
            fix="Pass the folder (or files) of a DICOM ultrasound study.",
        )
    loaded = load_checkpoint(_model_card(args))
    predictor = Predictor(loaded, backend=args.backend)
    out_doc: list[dict[str, Any]] = []
    progress, close = tqdm_progress("analyse", disable=args.no_progress or args.json)
    failed = 0
    try:
        for k, (patient, study) in enumerate(studies):
            analysis = analyse_study(
                study, predictor, max_key_frames=args.key_frames, progress=progress
            )
            sources = read_sources([s.source for s in study.series])
            objects = build_results(analysis, sources)
            folder = args.out / patient.pseudonym / f"study{k + 1:02d}"
            files = write_results(objects, folder)
            top = analysis.top
            entry: dict[str, Any] = {
                "pseudonym": patient.pseudonym,
                "study_uid": study.uid,
                "assessment": NO_ASSESSABLE if top is None else "assessed",
                "top_class": None if top is None else top[0],
                "top_probability": None if top is None else round(top[1], 6),
                "frames": len(analysis.frames),
                "assessable_frames": analysis.n_assessable,
                "files": [str(f) for f in files],
            }
            if node is not None and cfg is not None:
                from fetal_viewer.core.net.pacs import send

                sent = send(node, cfg.local, objects.all)
                entry["sent"] = sent.to_json()
                failed += len(sent.failed)
            out_doc.append(entry)
    finally:
        close()
    card = loaded.card
    if args.json:
        print(
            json.dumps(
                {
                    "intended_use": INTENDED_USE,
                    "model": {
                        "name": card.name,
                        "version": card.version,
                        "weights_sha256": card.weights_sha256,
                    },
                    "domain_guard": (
                        loaded.guard.summary()
                        if loaded.guard is not None
                        else {"note": loaded.guard_note}
                    ),
                    "studies": out_doc,
                },
                indent=2,
            )
        )
    else:
        guard = (
            f"domain guard: threshold {loaded.guard.threshold:.2f}"
            if loaded.guard is not None
            else loaded.guard_note
        )
        print(f"model: {card.name} {card.version}; {guard}. {INTENDED_USE}")
        for e in out_doc:
            what = (
                f"{e['top_class']} ({e['top_probability']:.3f})"
                if e["top_class"] is not None
                else NO_ASSESSABLE
            )
            line = (
                f"{e['pseudonym']}: {what} over {e['assessable_frames']} of {e['frames']} "
                f"frame(s) -> {Path(e['files'][0]).parent}"
            )
            if "sent" in e:
                line += f"; sent {e['sent']['sent']} object(s) to {args.send}"
            print(line)
            for what in e.get("sent", {}).get("failed", []):
                print(f"  not sent: {what['item']}: {what['why']}", file=sys.stderr)
    return 1 if failed else 0
