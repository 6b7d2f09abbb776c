"""Checkpoints and archives written before checkpoints were called so ("seals") still
read, and their signatures still hold: the signature covers the old field names."""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lintas.audit.checkpoints import LEGACY_TYPE, Checkpoint
from lintas.infra.keys.signing import KeyEntry, Registry, Signer, Verifier

AT = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)


def test_a_legacy_seal_reads_as_a_checkpoint_and_its_signature_holds() -> None:
    signer = Signer("kp2mi", Ed25519PrivateKey.generate())
    doc = signer.sign_document(
        {
            "type": LEGACY_TYPE,
            "stream": "LINTAS",
            "first_seq": 1,
            "last_seq": 3,
            "count": 3,
            "prev_digest": "sha256:" + "0" * 64,
            "digest": "sha256:" + "1" * 64,
            "sealed_at": AT.isoformat(),
            "sealed_by": "kp2mi",
        }
    )
    checkpoint = Checkpoint.from_doc(7, doc)
    assert (checkpoint.signed_by, checkpoint.signed_at, checkpoint.last_seq) == ("kp2mi", AT, 3)
    registry = Registry(
        [
            KeyEntry(
                "kp2mi", signer.keyid, signer._key.public_key(), valid_from=AT.replace(year=2000)
            )
        ]
    )
    Verifier(registry).verify_document(checkpoint.doc, signer="kp2mi", at=checkpoint.signed_at)
