"""``database.sealing``: secrets become keyed digests, a manifest's equal value is put back, a changed one is
not, an old key still verifies, a missing key is named; and the table of secret paths covers every ``Secret``
field of the manifest models (so a new secret field cannot be stored in clear by being forgotten here)."""

from __future__ import annotations

import hashlib
import hmac
import stat
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from nebctl.core.keys import Kind
from nebctl.database.sealing import (
    SECRET_PATHS,
    KeyRing,
    SecretKeyError,
    key_id,
    load_key_ring,
    reveal_spec,
    seal_spec,
)
from nebctl.schemas.models import MODEL_BY_KIND

OLD, NEW = b"old-key-0123456789abcdef", b"new-key-0123456789abcdef"
SPEC = {"vcpu": 1, "cloudInit": {"userData": "#cloud-config\nsecret", "metaData": None}, "nics": []}


def test_sealing_replaces_each_secret_by_its_hmac_under_the_first_key() -> None:
    sealed = seal_spec(Kind.VIRTUAL_MACHINE, SPEC, KeyRing((NEW, OLD)))
    assert sealed is not None
    expected = hmac.new(NEW, b"#cloud-config\nsecret", hashlib.sha256).hexdigest()
    assert sealed == {
        "vcpu": 1,
        "cloudInit": {"userData": f"hmac-sha256:{key_id(NEW)}:{expected}", "metaData": None},
        "nics": [],
    }
    assert SPEC["cloudInit"] == {"userData": "#cloud-config\nsecret", "metaData": None}  # not changed in place
    hook = seal_spec(Kind.HOOK, {"env": {"A": "x", "B": "y"}, "command": ["a"]}, KeyRing((NEW,)))
    assert hook is not None
    assert [value.split(":")[1] for value in hook["env"].values()] == [key_id(NEW)] * 2
    assert hook["command"] == ["a"]
    network = {"cidr": "10.0.0.0/24"}
    assert seal_spec(Kind.NETWORK, network, KeyRing((NEW,))) is network


def test_reveal_puts_back_equal_values_keeps_changed_ones_and_names_a_missing_key() -> None:
    stored = seal_spec(Kind.VIRTUAL_MACHINE, SPEC, KeyRing((OLD,)))
    both = KeyRing((NEW, OLD))
    same = reveal_spec(Kind.VIRTUAL_MACHINE, stored, SPEC, both)
    assert same.spec == SPEC and same.stale  # equal, and sealed by a key that is no longer the first
    changed = {**SPEC, "cloudInit": {"userData": "other", "metaData": None}}
    revealed = reveal_spec(Kind.VIRTUAL_MACHINE, stored, changed, both)
    assert revealed.spec == stored and not revealed.stale
    with pytest.raises(SecretKeyError, match=f"sealed with key {key_id(OLD)}, which is not in"):
        reveal_spec(Kind.VIRTUAL_MACHINE, stored, SPEC, KeyRing((NEW,)))
    # A deletion has no manifest to compare with: nothing to reveal, and no key is needed.
    assert reveal_spec(Kind.VIRTUAL_MACHINE, stored, None, KeyRing((NEW,))).spec == stored


def test_the_key_file_is_created_private_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "data" / "secret.key"
    ring = load_key_ring(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key_ring(path).keys == ring.keys and len(ring.keys) == 1 and len(ring.keys[0]) == 64
    path.write_text("# comment\n\nshort\n")
    with pytest.raises(SecretKeyError, match="shorter than 16"):
        load_key_ring(path)


def _secret_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for name, field in model.model_fields.items():
        for path, annotation in _annotations(field.annotation, (*prefix, name)):
            if annotation is SecretStr:
                found.append(path)
            elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
                found += _secret_paths(annotation, path)
    return found


def _annotations(annotation: Any, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any]]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _annotations(typing.get_args(annotation)[0], path)
    if origin is dict:
        return _annotations(typing.get_args(annotation)[1], (*path, "*"))
    if origin in (list, tuple):
        return []  # no secret lives in a list today; a new one would need a path syntax for it
    if origin is not None:  # unions (X | None)
        return [found for arg in typing.get_args(annotation) for found in _annotations(arg, path)]
    return [(path, annotation)]


def test_the_secret_paths_are_every_secret_field_of_the_models() -> None:
    for kind, model in MODEL_BY_KIND.items():
        spec_model = model.model_fields["spec"].annotation
        assert isinstance(spec_model, type) and issubclass(spec_model, BaseModel)
        assert sorted(_secret_paths(spec_model)) == sorted(SECRET_PATHS.get(kind, ())), kind
