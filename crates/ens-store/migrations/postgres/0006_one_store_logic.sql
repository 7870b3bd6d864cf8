-- One store logic over both engines: used SignatureNonces are kept as SQLite keeps them, as
-- the 64-bit digest of the key ID and the nonce (first 8 bytes of SHA-256 over
-- key, 0x00, nonce, big-endian, signed), so one claim statement serves both. Live nonces are
-- carried over, so the upgrade opens no replay window.
CREATE TABLE used_nonces (
    digest      BIGINT PRIMARY KEY,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX used_nonces_by_expiry ON used_nonces (expires_at);

INSERT INTO used_nonces (digest, expires_at)
SELECT ('x' || encode(substring(sha256(convert_to(access_key_id, 'UTF8') || '\x00'::bytea
        || convert_to(nonce, 'UTF8')) FROM 1 FOR 8), 'hex'))::bit(64)::bigint, max(expires_at)
FROM signature_nonces
GROUP BY 1
ON CONFLICT DO NOTHING;

DROP TABLE signature_nonces;

-- Build steps advance in due order, then image order, on both engines.
DROP INDEX images_by_build_due;
CREATE INDEX images_by_build_due ON images (build_due_at, seq) WHERE build_due_at IS NOT NULL;
