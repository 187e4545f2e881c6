"""A Mapper that encrypts personal values with the household's key; the rest stays readable JSON."""

from __future__ import annotations

import base64
import os
from typing import Any
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Cipher, Compressor, Mapper, StoredEvent, Transcoder

from jiuzhu.privacy.keys import DataKeyStore

__all__ = ["ERASED", "UNREADABLE", "PersonalDataMapper", "is_sealed"]

# What a personal field reads as once its household's key is destroyed.
ERASED = "[erased]"
# What it reads as when the ciphertext does not decrypt (altered in the store).
UNREADABLE = "[unreadable]"
_TOKEN = "enc:v1:"


def is_sealed(value: object) -> bool:
    """Whether a stored personal value is ciphertext."""
    return isinstance(value, str) and value.startswith(_TOKEN)


def _personal_holder(state: dict[str, Any]) -> dict[str, Any] | None:
    """The dict holding `personal` and `household_id`: the event itself, or a snapshot's state."""
    if isinstance(state.get("personal"), dict) and isinstance(state.get("household_id"), str):
        return state
    inner = state.get("state")
    if (
        isinstance(inner, dict)
        and isinstance(inner.get("personal"), dict)
        and isinstance(inner.get("household_id"), str)
    ):
        return inner
    return None


class PersonalDataMapper(Mapper[UUID]):
    """Seals `personal` values (Case.Discovered, Case snapshots) with AES-GCM per household.

    Stored bytes stay the library's JSON: only each personal value becomes a token
    "enc:v1:<key generation>:<base64 nonce+ciphertext>", bound to case, household and field.
    """

    def __init__(
        self,
        transcoder: Transcoder,
        keys: DataKeyStore,
        compressor: Compressor | None = None,
        cipher: Cipher | None = None,
    ) -> None:
        super().__init__(transcoder=transcoder, compressor=compressor, cipher=cipher)
        self.keys = keys

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        state = dict(vars(domain_event))
        holder = _personal_holder(state)
        if holder is None:
            return super().to_stored_event(domain_event)
        sealed_holder = dict(holder)
        sealed_holder["personal"] = self._seal(
            domain_event.originator_id, holder["household_id"], holder["personal"]
        )
        if holder is not state:
            state["state"] = sealed_holder
        else:
            state = sealed_holder
        # The library's own path, on a copy that carries ciphertext instead of clear text.
        sealed: Any = object.__new__(type(domain_event))
        object.__setattr__(sealed, "__dict__", state)
        return super().to_stored_event(sealed)

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        event = super().to_domain_event(stored_event)
        holder = _personal_holder(vars(event))
        if holder is not None:
            holder["personal"] = self._unseal(
                stored_event.originator_id, holder["household_id"], holder["personal"]
            )
        return event

    # -- sealing ------------------------------------------------------------------------

    @staticmethod
    def _aad(case_id: object, household_id: str, field: str) -> bytes:
        return f"{case_id}/{household_id}/{field}".encode()

    def _seal(self, case_id: object, household_id: str, personal: dict[str, Any]) -> dict[str, Any]:
        sealed: dict[str, Any] = {}
        generation, key = 0, b""
        for field, value in personal.items():
            if not isinstance(value, str) or value == ERASED or is_sealed(value):
                sealed[field] = value
                continue
            if not key:
                generation, key = self.keys.key_for_writing(household_id)
            nonce = os.urandom(12)
            ciphertext = AESGCM(key).encrypt(
                nonce, value.encode(), self._aad(case_id, household_id, field)
            )
            token = base64.urlsafe_b64encode(nonce + ciphertext).decode()
            sealed[field] = f"{_TOKEN}{generation}:{token}"
        return sealed

    def _unseal(
        self, case_id: object, household_id: str, personal: dict[str, Any]
    ) -> dict[str, Any]:
        clear: dict[str, Any] = {}
        for field, value in personal.items():
            if not is_sealed(value):
                clear[field] = value
                continue
            generation_text, _, token = value[len(_TOKEN) :].partition(":")
            key = self.keys.key_for_reading(household_id, int(generation_text))
            if key is None:
                clear[field] = ERASED
                continue
            raw = base64.urlsafe_b64decode(token)
            try:
                clear[field] = (
                    AESGCM(key)
                    .decrypt(raw[:12], raw[12:], self._aad(case_id, household_id, field))
                    .decode()
                )
            except InvalidTag:
                clear[field] = UNREADABLE
        return clear
