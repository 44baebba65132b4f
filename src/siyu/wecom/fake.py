"""The local WeCom server: a test double of qyapi.weixin.qq.com built from shared/WECOM.md.

``/cgi-bin/…`` answers like WeCom (HTTP 200, ``{"errcode": …, "errmsg": …}``): token checks
(41001 missing, 40014 invalid, 42001 expired), the per-corp per-API minute limit (45009,
then blocked 60 s), optional concurrency limit (45033), injected errors, then the API.
``/fake/…`` is the control side for tests, the CLI and the demo: seed, add a friend (emits
the signed, encrypted callback), confirm a mass message, move the clock, inject errors, read
what was sent.

    server = FakeServer(FakeWeCom(corp_id="wwdemo", secret="s"), port=0)
    base_url = server.start()          # http://127.0.0.1:<port>
    ...
    server.stop()

or ``siyu wecom fake --port 8030 --seed demo --callback-url http://127.0.0.1:8000/wecom/callback/demo-coffee``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Annotated, Any

from fastapi import Body, FastAPI, Request
from fastapi.responses import JSONResponse

from siyu.wecom import fake_apis_more
from siyu.wecom.fake_apis import APIS
from siyu.wecom.fake_settings import (
    DATA_FORMAT,
    FakeError,
    FakeSettings,
)
from siyu.wecom.fake_state import FakeWeCom

__all__ = ["FakeServer", "FakeSettings", "FakeWeCom", "create_fake_app"]

# control handlers are sync so they run in the thread pool: a friend add that waits for the
# callback must not block the loop that serves the receiver's send_welcome_msg
Payload = Annotated[dict[str, Any] | None, Body()]


def _answer(errcode: int, errmsg: str, data: dict[str, Any] | None = None) -> JSONResponse:
    return JSONResponse({"errcode": errcode, "errmsg": errmsg, **(data or {})})


def create_fake_app(fake: FakeWeCom) -> FastAPI:
    app = FastAPI(title="Siyu local WeCom server", docs_url=None, redoc_url=None)
    app.state.fake = fake

    @app.get("/cgi-bin/gettoken")
    def gettoken(corpid: str = "", corpsecret: str = "") -> JSONResponse:
        errcode = fake.take_injected("gettoken")
        if errcode is not None:
            fake.record_call("gettoken", errcode)
            return _answer(errcode, "injected")
        try:
            fake.count_call("gettoken")
            data = fake.issue_token(corpid, corpsecret)
        except FakeError as exc:
            fake.record_call("gettoken", exc.errcode)
            return _answer(exc.errcode, exc.errmsg)
        fake.record_call("gettoken", 0)
        return _answer(0, "ok", data)

    @app.api_route("/cgi-bin/{path:path}", methods=["GET", "POST"])
    async def cgi(path: str, request: Request) -> JSONResponse:
        query = dict(request.query_params)
        raw = await request.body() if request.method == "POST" else b""
        return _dispatch(fake, path, request.method, query, raw)

    _control(app, fake)
    return app


def _dispatch(
    fake: FakeWeCom, path: str, method: str, query: dict[str, str], raw: bytes
) -> JSONResponse:
    found = APIS.get(path)
    if found is None:
        return JSONResponse({"errcode": 404, "errmsg": f"unknown api {path}"}, status_code=404)
    want, handler = found
    try:
        injected = fake.take_injected(path)
        if injected is not None:
            raise FakeError(injected, "injected")
        fake.check_token(query.pop("access_token", None))
        if method != want:
            raise FakeError(DATA_FORMAT, f"{path} expects {want}")
        body: dict[str, Any] = {}
        if want == "POST":
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                raise FakeError(DATA_FORMAT, "data format error") from None
            if not isinstance(body, dict):
                raise FakeError(DATA_FORMAT, "data format error")
        fake.count_call(path)
        fake.enter(path)
        try:
            with fake.lock:
                data = handler(fake, query, body)
        finally:
            fake.leave(path)
    except FakeError as exc:
        fake.record_call(path, exc.errcode)
        return _answer(exc.errcode, exc.errmsg)
    fake.record_call(path, 0)
    return _answer(0, "ok", data)


def _control(app: FastAPI, fake: FakeWeCom) -> None:
    """``/fake/…``: no token, plain JSON, errors as HTTP 400 with the errcode."""

    def run(fn: Any, *args: Any, **kwargs: Any) -> JSONResponse:
        try:
            return JSONResponse(fn(*args, **kwargs))
        except FakeError as exc:
            return JSONResponse({"errcode": exc.errcode, "errmsg": exc.errmsg}, status_code=400)
        except (TypeError, ValueError, KeyError) as exc:
            return JSONResponse({"errcode": -3, "errmsg": str(exc)}, status_code=400)

    @app.get("/fake/state")
    def state() -> JSONResponse:
        return JSONResponse({"summary": fake.summary(), "settings": vars(fake.settings)})

    @app.post("/fake/seed")
    def seed(body: Payload = None) -> JSONResponse:
        b = dict(body or {})
        return run(_seed, fake, b)

    @app.post("/fake/settings")
    def settings(body: Payload = None) -> JSONResponse:
        b = dict(body or {})

        def apply() -> dict[str, Any]:
            fake.configure(**b)
            return vars(fake.settings)

        return run(apply)

    @app.post("/fake/friends")
    def add_friend(body: Payload = None) -> JSONResponse:
        b = dict(body or {})
        userid = b.pop("userid", "")
        return run(fake.add_friend, userid, **b)

    @app.post("/fake/friends/delete")
    def delete_friend(body: Payload = None) -> JSONResponse:
        b = dict(body or {})

        def remove() -> dict[str, Any]:
            fake.remove_friend(b["userid"], b["external_userid"], by=b.get("by", "member"))
            return {"ok": True}

        return run(remove)

    @app.post("/fake/acquisition")
    def acquisition(body: Payload = None) -> JSONResponse:
        b = dict(body or {})
        link_id = b.pop("link_id", "")
        return run(fake_apis_more.acquisition_add, fake, link_id, **b)

    @app.post("/fake/group_chats")
    def add_group(body: Payload = None) -> JSONResponse:
        b = dict(body or {})
        owner, name = b.pop("owner", ""), b.pop("name", "")
        return run(fake.add_group_chat, owner, name, emit=True, **b)

    @app.post("/fake/group_chats/{chat_id}/members")
    def group_members(chat_id: str, body: Payload = None) -> JSONResponse:
        b = dict(body or {})
        return run(
            fake.change_group_members, chat_id, add=b.get("add", []), remove=b.get("remove", [])
        )

    @app.post("/fake/group_chats/{chat_id}/dismiss")
    def dismiss_group(chat_id: str) -> JSONResponse:
        def dismiss() -> dict[str, Any]:
            fake.dismiss_group_chat(chat_id)
            return {"ok": True}

        return run(dismiss)

    @app.post("/fake/mass/{msgid}/confirm")
    def confirm(msgid: str, body: Payload = None) -> JSONResponse:
        b = dict(body or {})
        return run(fake_apis_more.confirm_mass, fake, msgid, b.get("userid"))

    @app.post("/fake/transfers/decide")
    def decide(body: Payload = None) -> JSONResponse:
        b = dict(body or {})
        xid = b.pop("external_userid", "")
        return run(fake_apis_more.decide_transfer, fake, xid, **b)

    @app.post("/fake/inject")
    def inject(body: Payload = None) -> JSONResponse:
        b = dict(body or {})

        def add() -> dict[str, Any]:
            fake.inject(b["api"], int(b["errcode"]), times=int(b.get("times", 1)))
            return {"ok": True}

        return run(add)

    @app.post("/fake/tokens/expire")
    def expire() -> JSONResponse:
        return JSONResponse({"expired": fake.expire_tokens()})

    @app.post("/fake/tokens/invalidate")
    def invalidate() -> JSONResponse:
        return JSONResponse({"invalidated": fake.invalidate_tokens()})

    @app.post("/fake/clock/advance")
    def advance(body: Payload = None) -> JSONResponse:
        b = dict(body or {})
        fake.advance(float(b.get("seconds", 0)))
        return JSONResponse({"now": fake.now()})

    @app.post("/fake/callback/verify")
    def verify() -> JSONResponse:
        return JSONResponse({"ok": fake.verify_callback_url()})

    @app.get("/fake/welcome_messages")
    def welcome_messages() -> JSONResponse:
        with fake.lock:
            return JSONResponse(list(fake.state.welcome_sent))

    @app.get("/fake/mass_messages")
    def mass_messages() -> JSONResponse:
        with fake.lock:
            created = [
                {
                    "msgid": m["msgid"],
                    "chat_type": m["chat_type"],
                    "creator": m["creator"],
                    "text": m["text"],
                    "confirmed": all(t["status"] == 2 for t in m["tasks"].values()),
                }
                for m in fake.state.mass.values()
            ]
            return JSONResponse({"created": created, "delivered": list(fake.state.delivered)})

    @app.get("/fake/callbacks")
    def callbacks() -> JSONResponse:
        with fake.lock:
            return JSONResponse([d.as_dict() for d in fake.callbacks])

    @app.get("/fake/calls")
    def calls() -> JSONResponse:
        with fake.lock:
            return JSONResponse(list(fake.calls))


def _seed(fake: FakeWeCom, b: dict[str, Any]) -> dict[str, Any]:
    """``{"demo": true}`` or explicit departments/users/customers/group_chats/tag_groups."""
    if b.get("demo"):
        return fake.seed_demo(customers=int(b.get("customers", 12)))
    with fake.lock:
        for d in b.get("departments", []):
            fake.add_department(int(d["id"]), d["name"], int(d.get("parentid", 0)))
        for u in b.get("users", []):
            fake.add_user(u.pop("userid"), u.pop("name", ""), u.pop("department", None), **u)
        for c in b.get("customers", []):
            follows = c.pop("follow", [])
            contact = fake.add_customer(c.pop("name", "客户"), **c)
            for f in follows:
                userid = f.pop("userid")
                fake.user_or_error(userid)
                fake.follow(userid, contact["external_userid"], **f)
        for g in b.get("tag_groups", []):
            fake.add_tag_group(g["group_name"], list(g.get("tags", [])))
        for g in b.get("group_chats", []):
            fake.add_group_chat(g.pop("owner"), g.pop("name", ""), **g)
        return fake.summary()


class FakeServer:
    """The fake served by uvicorn on loopback in a background thread."""

    def __init__(self, fake: FakeWeCom | None = None, *, host: str = "127.0.0.1", port: int = 0):
        self.fake = fake or FakeWeCom()
        self.host = host
        self.port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> str:
        import uvicorn

        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets of that protocol
        # (proto 0 leaves Nagle on, and every answer waits ~40 ms for a delayed ACK)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_fake_app(self.fake), log_level="warning", lifespan="off", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the local WeCom server did not start")
            time.sleep(0.02)
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> FakeServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
