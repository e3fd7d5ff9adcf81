-- Witnesses (C2SP tlog-witness) cosign each log's checkpoints once they have checked them
-- consistent with what they cosigned before. A checkpoint's cosignature lines are kept beside
-- its own signed note (what is sent to a witness is the note alone); the cosigned note is the
-- note followed by them.
ALTER TABLE transparency_checkpoints
  ADD COLUMN cosignatures text NOT NULL DEFAULT '',
  ADD COLUMN cosigners integer NOT NULL DEFAULT 0 CHECK (cosigners >= 0);

-- The published checkpoint is written again when it gains cosignatures.
ALTER TABLE transparency_logs
  ADD COLUMN published_cosigners integer NOT NULL DEFAULT 0 CHECK (published_cosigners >= 0);

-- What each witness knows of each log: the size it last cosigned (or told in a 409), so the
-- next submission carries one consistency proof from there; and, while it fails, why and when
-- it is tried again (a back-off, so a witness that is down costs no pass its timeout).
CREATE TABLE transparency_witnesses (
    merchant_id  uuid NOT NULL REFERENCES transparency_logs (merchant_id),
    witness      text NOT NULL,
    size         bigint NOT NULL DEFAULT 0 CHECK (size >= 0),
    failures     integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    retry_at     timestamptz,
    last_error   text,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, witness)
);
