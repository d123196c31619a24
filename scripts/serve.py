"""Serve every function of functions/main.py locally with functions-framework, one path each.

    FIRESTORE_EMULATOR_HOST=127.0.0.1:8181 FIREBASE_AUTH_EMULATOR_HOST=127.0.0.1:9099 \
        python scripts/serve.py --port 8765
    curl -X POST localhost:8765/recordObservation ...

functions-framework serves one target per app; we build one app per deployed function (each through
``functions_framework.create_app``, exactly as Cloud Run functions would) and mount them side by side.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = (
    "recordObservation", "assignPolicy", "recordFeedback", "scoreObservations", "autoTunePolicies", "evaluateRollouts",
    "deliverEvents", "scoreShard",
    "activatePolicy", "rollbackPolicy", "startShadow", "startCanary", "promotePolicy", "rejectPolicy",
    "setLearningFlags", "previewRewardConfig",
)


def build_app() -> object:
    import functions_framework
    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    from werkzeug.wrappers import Response

    sys.path.insert(0, str(ROOT / "functions"))
    source = str(ROOT / "functions" / "main.py")
    def rooted(app: Any) -> Any:
        # Mounted at /name, a request for exactly /name reaches the app with an empty path; without this
        # Flask answers 308 to /name/, which makes clients re-send (and streamed bodies arrive empty).
        def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
            if not environ.get("PATH_INFO"):
                environ["PATH_INFO"] = "/"
            return app(environ, start_response)

        return wsgi

    mounts = {f"/{name}": rooted(functions_framework.create_app(target=name, source=source)) for name in FUNCTIONS}

    def not_found(environ: dict[str, object], start_response: object) -> object:
        names = ", ".join(f"/{n}" for n in FUNCTIONS)
        return Response(f"no such function; serving {names}\n", status=404)(environ, start_response)  # type: ignore[arg-type]

    return DispatcherMiddleware(not_found, mounts)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    for var in ("FIRESTORE_EMULATOR_HOST", "FIREBASE_AUTH_EMULATOR_HOST"):
        if not os.environ.get(var):
            print(f"warning: {var} is not set; the functions will talk to production", file=sys.stderr)
    from werkzeug.serving import run_simple

    app = build_app()
    print(f"serving {', '.join(FUNCTIONS)} on http://{args.host}:{args.port}/<name>", flush=True)
    run_simple(args.host, args.port, app, threaded=True, use_reloader=False)  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
