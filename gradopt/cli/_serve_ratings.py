"""`gradopt serve-ratings STORE`: a rating page in the browser, for one or several raters at once.

The page shows two tunes as sheet music (abcjs, inlined from the venv: nothing is fetched from
elsewhere; without abcjs it shows the ABC text), play buttons, the buttons / keys 1, 2, t, s, u,
and the rater's progress. Each rater types a name once (kept per browser tab). JSON API, every
route behind the token when one is set (``Authorization: Bearer T`` or ``?token=T``):

    GET  /api/next?rater=NAME        -> {"pair": "<a id>:<b id>", "a": item, "b": item, "source", "progress"}
    POST /api/verdict {"rater", "pair", "verdict": first|second|tie|skip, "rating_id"} -> {"stored", "progress"}
    POST /api/undo    {"rater", "rating_id"?}   -> {"undone": record or null, "progress"}

A verdict is appended to the store and fsynced before the response is sent. ``rating_id`` is made
up by the page for each rating and sent again when it retries (e.g. across a server restart): a
rating whose id is stored is not stored again. A request the server cannot use gets a 4xx with
{"error": message}: 400 for missing or bad fields (unknown item ids, a bad verdict, a reused
rating id), 401 without the token, 403 with a wrong one.
"""

from __future__ import annotations

import hmac
import json
import sys
from dataclasses import asdict

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _item(item) -> dict:
    return {"id": item.id, "text": item.text, "domain": item.domain, "origin": item.origin}


def build_app(store, *, token: str | None = None, strategy: str = "racing", seed: int = 0):
    """The Starlette app serving the rating page and API for `store` (a `RatingStore` or directory)."""
    import domains
    import rewardmodels as rm
    from starlette.applications import Starlette
    from starlette.routing import Route

    if not isinstance(store, rm.RatingStore):
        store = rm.RatingStore(store, create=False)
    if token is not None and not token:
        raise ValueError("--token must not be empty (leave it out to serve without a token)")
    if strategy not in rm.STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {rm.STRATEGIES}")
    page = _page(domains.abcjs_script(), domains.ABCJS_HINT)
    index, next_pair, verdict, undo = _handlers(page, _session_getter(store, strategy, seed))
    return Starlette(routes=[
        Route("/", _endpoint(index, token)),
        Route("/api/next", _endpoint(next_pair, token)),
        Route("/api/verdict", _endpoint(verdict, token), methods=["POST"]),
        Route("/api/undo", _endpoint(undo, token), methods=["POST"]),
    ])


def _session_getter(store, strategy: str, seed: int):
    """A function giving the `RatingSession` of a rater name (one per name, made on first use); a bad
    name is a 400."""
    import rewardmodels as rm

    sessions: dict[str, rm.RatingSession] = {}

    def session(rater) -> rm.RatingSession:
        try:
            name = rm.check_rater(rater)
        except ValueError as err:
            raise _BadRequest(400, str(err)) from None
        if name not in sessions:  # all on one store object: one lock, one fit
            sessions[name] = rm.RatingSession(store, name, strategy=strategy, seed=seed)
        return sessions[name]

    return session


def _check_token(request, token: str | None) -> None:
    """Raise 401 when the server has a token and the request carries none, 403 when it is wrong."""
    if token is None:
        return
    given = request.query_params.get("token")
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        given = header[7:].strip()
    if not given:
        raise _BadRequest(401, "this server needs its token: open the page as /?token=<token> or send "
                               "'Authorization: Bearer <token>'")
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise _BadRequest(403, "wrong token")


async def _body(request) -> dict:
    """The request's JSON object body; anything else is a 400."""
    try:
        data = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _BadRequest(400, "the request body must be a JSON object") from None
    if not isinstance(data, dict):
        raise _BadRequest(400, "the request body must be a JSON object")
    return data


def _endpoint(handler, token: str | None):
    """`handler` behind the token check, with bad requests turned into {"error": ...} responses."""
    from starlette.responses import JSONResponse

    async def wrapped(request):
        try:
            _check_token(request, token)
            return await handler(request)
        except _BadRequest as err:
            return JSONResponse({"error": str(err)}, status_code=err.status)
        except ValueError as err:  # the session's checks: unknown ids, bad verdict, reused rating id
            return JSONResponse({"error": str(err)}, status_code=400)
    return wrapped


def _pair_json(s) -> dict:
    """The next pair of session `s` as the API sends it."""
    pair = s.next_pair()
    if pair is None:
        return {"pair": None, "progress": s.progress(), "error": "the store holds fewer than 2 items"}
    return {"pair": pair.id, "a": _item(pair.a), "b": _item(pair.b), "source": pair.source,
            "progress": s.progress()}


def _handlers(page: str, session):
    """The four route handlers (index, next, verdict, undo) over `session` (rater name -> session)."""
    import rewardmodels as rm
    from starlette.responses import HTMLResponse, JSONResponse

    async def index(request):
        return HTMLResponse(page)

    async def next_pair(request):
        return JSONResponse(_pair_json(session(request.query_params.get("rater"))))

    async def verdict(request):
        data = await _body(request)
        missing = [k for k in ("rater", "pair", "verdict", "rating_id") if k not in data]
        if missing:
            raise _BadRequest(400, f"missing field(s) {missing}; send rater, pair, verdict and rating_id "
                                   "(a new unique id per rating, the same one when retrying)")
        s = session(data["rater"])
        rec = s.record(rm.split_pair_id(data["pair"]), data["verdict"], rating_id=data["rating_id"])
        return JSONResponse({"stored": {**asdict(rec), "kind": "skip" if isinstance(rec, rm.Skip) else rec.kind},
                             "progress": s.progress()})

    async def undo(request):
        data = await _body(request)
        if "rater" not in data:
            raise _BadRequest(400, "missing field 'rater'")
        s = session(data["rater"])
        rec = s.undo(data.get("rating_id"))
        return JSONResponse({"undone": None if rec is None else asdict(rec), "progress": s.progress()})

    return index, next_pair, verdict, undo


def cmd_serve_ratings(args) -> int:
    import rewardmodels as rm
    import uvicorn

    store = rm.RatingStore(args.store, create=False)
    app = build_app(store, token=args.token, strategy=args.strategy, seed=args.seed)
    if args.host not in LOOPBACK and args.token is None:
        print(f"warning: serving on {args.host} without --token: anyone who can reach it can rate", file=sys.stderr)
    query = f"?token={args.token}" if args.token else ""
    print(f"rating page for {store.directory} ({len(store)} items) at http://{args.host}:{args.port}/{query}",
          flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def register(subparsers) -> None:
    import argparse

    from rewardmodels import STRATEGIES

    p = subparsers.add_parser(
        "serve-ratings", help="serve a rating page for the browser", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Serve a page where one or several people rate pairs of a store's tunes (sheet music, "
                    "play buttons, keys 1/2/t/s/u). Every rating is on disk before the page hears back.")
    p.add_argument("store", help="rating store directory")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument("--token", help="shared secret every request must carry (the page: /?token=...)")
    p.add_argument("--strategy", choices=STRATEGIES, default="racing", help="active selection after the queue")
    p.add_argument("--seed", type=int, default=0, help="random seed of the selection and display order")
    p.set_defaults(func=cmd_serve_ratings)


def _page(abcjs: str | None, hint: str) -> str:
    import html

    from ._rating_page import PAGE

    script = f"<script>{abcjs}</script>" if abcjs else ""
    note = "" if abcjs else html.escape(f"the ABC text is shown; for sheet music and playback, {hint}")
    return PAGE.replace("{{NOTE}}", note).replace("<!--ABCJS-->", script)
