"""WeCom callback crypto against the published test vectors (shared/WECOM.md), verbatim."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siyu.wecom.crypto import CallbackError, WeComCrypt, parse_xml, signature

A = WeComCrypt("QDG6eK", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", "wx5823bf96d3bd56c7")
C = WeComCrypt(
    "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo",
    "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt",
    "ww1436e0e65a779aee",
)
A2_ENCRYPT = (
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3Qczc"
    "dCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLj"
    "vd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMn"
    "vw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k"
    "22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2Yoy"
    "yH2uyPIGHBZZIs2pDBS8R07+qN+E7Q=="
)


def test_vector_a1_url_verification() -> None:
    echostr = (
        "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
    )
    plain = A.verify_url(
        "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3", "1409659589", "263014780", echostr
    )
    assert plain == "1616140317555161061"


def test_vector_a2_message() -> None:
    assert signature("QDG6eK", "1409659813", "1372623149", A2_ENCRYPT) == (
        "477715d11cdb4164915debcba66cb864d751f3e6"
    )
    text = A.decrypt(A2_ENCRYPT)
    assert len(text.encode()) == 284
    # fields separated by "\n", as the doc says
    assert text.split("\n")[:2] == [
        "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>",
        "<FromUserName><![CDATA[mycreate]]></FromUserName>",
    ]
    body = (
        "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>"
        f"<Encrypt><![CDATA[{A2_ENCRYPT}]]></Encrypt><AgentID><![CDATA[218]]></AgentID></xml>"
    )
    msg = A.decrypt_message(
        "477715d11cdb4164915debcba66cb864d751f3e6", "1409659813", "1372623149", body
    )
    assert msg == {
        "ToUserName": "wx5823bf96d3bd56c7",
        "FromUserName": "mycreate",
        "CreateTime": "1409659813",
        "MsgType": "text",
        "Content": "hello",
        "MsgId": "4561255354251345929",
        "AgentID": "218",
    }


def test_vector_c_python_sample() -> None:
    echostr = (
        "fsi1xnbH4yQh0+PJxcOdhhK6TDXkjMyhEPA7xB2TGz6b+g7xyAbEkRxN/3cNXW9qdqjnoVzEtpbhnFyq6SVHyA=="
    )
    plain = C.verify_url(
        "012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb", "1476416373", "47744683", echostr
    )
    assert plain == "1288432023552776189"


@pytest.mark.parametrize(
    ("mutate", "code", "wecom_code"),
    [
        (lambda s, e: ("0" * 40, e), "wecom.bad_signature", -40001),
        (lambda s, e: (s, e[:-8] + "AAAAAAA="), "wecom.bad_signature", -40001),
    ],
)
def test_tampering_is_refused(mutate: object, code: str, wecom_code: int) -> None:
    sig, enc = "477715d11cdb4164915debcba66cb864d751f3e6", A2_ENCRYPT
    sig, enc = mutate(sig, enc)  # type: ignore[operator]
    with pytest.raises(CallbackError) as exc:
        A.verify_url(sig, "1409659813", "1372623149", enc)
    assert (exc.value.code, exc.value.wecom_code) == (code, wecom_code)


def test_wrong_receiver_is_refused() -> None:
    other = WeComCrypt(A.token, A.encoding_aes_key, "ww-someone-else")
    with pytest.raises(CallbackError) as exc:
        other.decrypt(A2_ENCRYPT)
    assert exc.value.wecom_code == -40005


def test_garbage_and_bad_keys() -> None:
    for junk in ("not base64!!", "AAAA", ""):
        with pytest.raises(CallbackError):
            A.decrypt(junk)
    with pytest.raises(CallbackError) as exc:
        WeComCrypt("tok", "short", "corp")
    assert exc.value.wecom_code == -40004


def test_xml_entities_are_refused() -> None:
    bomb = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><xml><A>&a;</A></xml>'
    with pytest.raises(CallbackError):
        parse_xml(bomb)


@given(st.text(min_size=0, max_size=3000))
def test_round_trip_any_text(message: str) -> None:
    encrypted = C.encrypt(message)
    assert C.decrypt(encrypted) == message
    reply = parse_xml(C.encrypt_reply(message, "1700000000", "42"))
    assert reply["MsgSignature"] == signature(C.token, "1700000000", "42", reply["Encrypt"])
    assert C.decrypt(reply["Encrypt"]) == message
