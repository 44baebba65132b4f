"""Templates (acceptance 1): an unknown variable or a forbidden expression is refused at save
with a precise error (code, line, column, name), and rendering never executes injected code —
not even a template stored around the save path, which the sandbox alone must stop."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from siyu.content import actions, queries, templating
from siyu.content.models import Material, MaterialVersion
from siyu.content.schemas import MaterialIn, PreviewIn
from siyu.core.errors import Invalid
from siyu.core.tenancy import SYSTEM
from siyu.org.queries import access_brand

# Known server-side template injection payloads (Jinja2 / Python format strings).
SSTI = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ self }}",
    "{{ self._TemplateReference__context }}",
    "{% for x in ().__class__.__base__.__subclasses__() %}{{ x }}{% endfor %}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ lipsum }}",
    "{{ config }}",
    "{{ config.items() }}",
    "{{ request }}",
    "{{ request.application.__globals__ }}",
    "{{ '%s'|format(nickname) }}",
    "{{ '{0.__class__}'.format(nickname) }}",
    "{{ nickname|attr('__class__') }}",
    "{{ nickname|attr('\\x5f\\x5fclass\\x5f\\x5f') }}",
    "{{ nickname.__class__ }}",
    "{{ nickname.upper() }}",
    "{{ nickname['__class__'] }}",
    "{{ '%s' % nickname }}",
    "{{ range(100000000)|list }}",
    "{{ dict(a=1) }}",
    "{% set x = nickname %}{{ x }}",
    "{% import 'os' as os %}",
    "{% include '/etc/passwd' %}",
    "{% extends 'base.html' %}",
    "{% macro m() %}{% endmacro %}",
    "{% with a = 1 %}{{ a }}{% endwith %}",
    "{% filter upper %}x{% endfilter %}",
    "{{ coupon.__class__ }}",
    "{{ coupon.code.__class__ }}",
    "{{ nickname|map('upper')|list }}",
    "{{ nickname|truncate(nickname) }}",
    "{{ [].__class__ }}",
    "{{ {}.__class__ }}",
    "{{ (1).__class__ }}",
    "{{ nickname|sort }}",
    "{{ nickname is sameas nickname }}",
    "{{ getattr }}",
]


@pytest.mark.parametrize("payload", SSTI)
def test_injection_payloads_are_refused_at_save(payload: str) -> None:
    with pytest.raises(Invalid) as exc:
        templating.check(payload)
    assert exc.value.code in {
        "content.template_forbidden",
        "content.template_forbidden_attribute",
        "content.template_unknown_variable",
        "content.template_unknown_filter",
        "content.template_syntax",
    }
    (err,) = exc.value.errors
    assert err.row == 1 and err.field == "text"


@pytest.mark.parametrize("payload", SSTI)
def test_render_refuses_injection_even_when_stored_around_save(payload: str) -> None:
    with pytest.raises(Invalid):
        templating.render(payload, {"nickname": "小王", "coupon": {"code": "C1"}})


@pytest.mark.parametrize("payload", SSTI)
def test_the_sandbox_alone_never_reaches_python_internals(payload: str) -> None:
    # without the save-time check: the sandbox (no globals, whitelisted filters) either
    # refuses or renders something harmless — never a class, a module or a function
    try:
        out = templating.sandbox_render(payload, {"nickname": "小王", "coupon": {"code": "C1"}})
    except Invalid as exc:
        assert exc.code in {"content.template_unsafe", "content.template_render_failed"}
        return
    for leak in ("<class", "<module", "<function", "<built-in", "__globals__", "uid=", "root:"):
        assert leak not in out, out


def test_precise_errors_name_line_column_and_name() -> None:
    with pytest.raises(Invalid) as exc:
        templating.check("你好 {{ nickname }}\n到店请找 {{ guide }}")
    assert exc.value.code == "content.template_unknown_variable"
    assert exc.value.params == {"name": "guide", "line": 2, "column": 9}
    with pytest.raises(Invalid) as exc:
        templating.check("a\nb\n{{ coupon.secret }}")
    assert exc.value.code == "content.template_forbidden_attribute"
    assert exc.value.params["name"] == "secret" and exc.value.params["line"] == 3
    with pytest.raises(Invalid) as exc:
        templating.check("{{ nickname|format(1) }}")
    assert exc.value.code == "content.template_unknown_filter"
    assert exc.value.params["name"] == "format"
    with pytest.raises(Invalid) as exc:
        templating.check("ok\n{% if nickname %}")
    assert exc.value.code == "content.template_syntax" and exc.value.params["line"] == 2
    assert "en" and exc.value.message("en").startswith("Template syntax error on line 2")


def test_allowed_language_renders_with_fallbacks() -> None:
    src = (
        "{{ nickname|default('朋友') }}，{{ store }}上新了"
        "{% if coupon %}，券码 {{ coupon.code|upper }}{% endif %}"
        "{% if member_tier == '金卡' %}（金卡专享）{% else %}。{% endif %}"
    )
    checked = templating.check(src)
    assert checked.variables == ("coupon", "member_tier", "nickname", "store")
    out = templating.render(src, {"nickname": "", "coupon": {"code": "ab12"}}, {"store": "门店"})
    assert out == "朋友，门店上新了，券码 AB12。"
    out = templating.render(src, {"nickname": "小王", "store": "静安店", "member_tier": "金卡"})
    assert out == "小王，静安店上新了（金卡专享）"


def _material(text: str, **kw: Any) -> MaterialIn:
    return MaterialIn.model_validate({"kind": "text", "name": "t", "body": {"text": text}, **kw})


def test_save_refuses_and_stored_bypass_cannot_render(db: Session, world: Any) -> None:
    brand = access_brand(db, SYSTEM, "a-coffee")
    with pytest.raises(Invalid) as exc:
        actions.create_material(db, SYSTEM, brand, _material("hi {{ cycler.__init__ }}"))
    assert exc.value.code == "content.template_forbidden_attribute"
    assert exc.value.errors[0].field == "body.text"
    assert db.scalar(select(Material.id)) is None
    # a link card's title is a template too
    with pytest.raises(Invalid) as exc:
        actions.create_material(
            db,
            SYSTEM,
            brand,
            MaterialIn(
                kind="link",
                name="l",
                body={"title": "{{ phone }}", "url": "https://mall.example.com/"},
            ),
        )
    assert exc.value.code == "content.template_unknown_variable"
    assert exc.value.errors[0].field == "body.title"
    # stored around the save path: the preview (render) still refuses it
    m = actions.create_material(db, SYSTEM, brand, _material("hi {{ nickname }}"))
    db.execute(
        update(MaterialVersion)
        .where(MaterialVersion.material_id == m.id)
        .values(body={"text": "{{ ''.__class__.__mro__ }}"})
    )
    db.commit()
    with pytest.raises(Invalid) as exc:
        queries.preview(db, SYSTEM, brand, PreviewIn(material_id=m.id))
    assert exc.value.code == "content.template_forbidden_attribute"


def test_fallbacks_must_name_known_variables(db: Session, world: Any) -> None:
    brand = access_brand(db, SYSTEM, "a-coffee")
    with pytest.raises(Invalid) as exc:
        actions.create_material(
            db, SYSTEM, brand, _material("{{ nickname }}", fallbacks={"nick": "朋友"})
        )
    assert exc.value.code == "content.template_unknown_variable"
    with pytest.raises(Invalid) as exc:
        actions.create_material(
            db, SYSTEM, brand, _material("{{ nickname }}", fallbacks={"nickname": "{{ x }}"})
        )
    assert exc.value.code == "content.bad_fallback"
