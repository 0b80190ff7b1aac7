"""The backup key from settings: configured, retired keys, the development key file, and
production's refusal to run without one."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from server.backup.errors import BackupError
from server.backup.keys import BACKUP_KEY_FILE, BackupKeys, require_backup_key
from server.core.config import Environment, Settings
from server.core.crypto import DATA_KEY_FILE, generate_data_key


def settings(tmp_path: Path, **values: object) -> Settings:
    base: dict[str, object] = {"data_dir": tmp_path, "backup_encryption_key": SecretStr("")}
    base.update(values)
    return Settings(**base)  # type: ignore[arg-type]


def test_configured_key_and_retired_keys(tmp_path: Path) -> None:
    current, old1, old2 = generate_data_key(), generate_data_key(), generate_data_key()
    keys = BackupKeys.from_settings(
        settings(
            tmp_path,
            backup_encryption_key=SecretStr(current),
            backup_encryption_previous_keys=SecretStr(f" {old1},\n{old2} "),
        )
    )
    expected = [
        BackupKeys.from_bytes(base64.b64decode(k)).current.key_id for k in (current, old1, old2)
    ]
    assert list(keys.key_ids) == expected
    assert all(len(k) == 16 and int(k, 16) >= 0 for k in keys.key_ids)
    for key_id in expected:
        assert keys.get(key_id).key_id == key_id
    with pytest.raises(BackupError) as caught:
        keys.get("00" * 8)
    assert caught.value.reason == "BACKUP_KEY_UNKNOWN"
    assert not (tmp_path / BACKUP_KEY_FILE).exists()


def test_key_id_and_repr_reveal_nothing() -> None:
    material = os.urandom(32)
    keys = BackupKeys.from_bytes(material)
    assert keys.current.key_id not in material.hex()
    for text in (repr(keys), repr(keys.current), str(keys)):
        assert material.hex() not in text
        assert base64.b64encode(material).decode() not in text
    # URL-safe base64 is accepted too; a different key has a different id.
    urlsafe = base64.urlsafe_b64encode(material).decode()
    same = BackupKeys.from_settings(Settings(backup_encryption_key=SecretStr(urlsafe)))
    assert same.current.key_id == keys.current.key_id
    assert BackupKeys.from_bytes(os.urandom(32)).current.key_id != keys.current.key_id


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"backup_encryption_key": SecretStr("c2hvcnQ=")}, "GENCHARGE_BACKUP_ENCRYPTION_KEY"),
        ({"backup_encryption_key": SecretStr("not base64 at all!")}, "BACKUP_ENCRYPTION_KEY"),
        (
            {"backup_encryption_previous_keys": SecretStr(f"{generate_data_key()}, c2hvcnQ=")},
            "GENCHARGE_BACKUP_ENCRYPTION_PREVIOUS_KEYS: key 2",
        ),
    ],
)
def test_malformed_keys_are_named_not_echoed(
    tmp_path: Path, values: dict[str, object], message: str
) -> None:
    for check in (BackupKeys.from_settings, require_backup_key):
        with pytest.raises(ValueError, match=message) as caught:
            check(settings(tmp_path, **values))
        assert "c2hvcnQ" not in str(caught.value) and "not base64 at all" not in str(caught.value)


def test_development_key_file_is_made_once(tmp_path: Path) -> None:
    first = BackupKeys.from_settings(settings(tmp_path))
    path = tmp_path / BACKUP_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert BackupKeys.from_settings(settings(tmp_path)).key_ids == first.key_ids
    # Its own key, not the data key.
    assert path != tmp_path / DATA_KEY_FILE
    assert not (tmp_path / DATA_KEY_FILE).exists()


def test_development_key_file_damaged(tmp_path: Path) -> None:
    BackupKeys.from_settings(settings(tmp_path))
    (tmp_path / BACKUP_KEY_FILE).write_text("garbage\n")
    with pytest.raises(ValueError, match=r"backup\.key does not hold a base64 32-byte key"):
        BackupKeys.from_settings(settings(tmp_path))


def test_no_ephemeral_development_key(tmp_path: Path) -> None:
    """Backups under a key lost at restart could never be restored: no fallback."""
    missing = tmp_path / "does-not-exist"
    with pytest.raises(ValueError, match="cannot keep the development backup key"):
        BackupKeys.from_settings(settings(missing))


def test_production_requires_the_key(tmp_path: Path) -> None:
    production = settings(tmp_path, environment=Environment.PRODUCTION)
    for check in (BackupKeys.from_settings, require_backup_key):
        with pytest.raises(ValueError, match="GENCHARGE_BACKUP_ENCRYPTION_KEY is required"):
            check(production)
    assert not (tmp_path / "keys").exists()
    key = generate_data_key()
    configured = settings(
        tmp_path, environment=Environment.PRODUCTION, backup_encryption_key=SecretStr(key)
    )
    require_backup_key(configured)
    assert BackupKeys.from_settings(configured).current.key_id


def test_development_start_up_check_writes_nothing(tmp_path: Path) -> None:
    require_backup_key(settings(tmp_path))
    assert not (tmp_path / "keys").exists()
