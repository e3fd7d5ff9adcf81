-- A transparency log per merchant (RFC 9162 hashing): every completed run's manifest bytes are
-- an entry, appended in the transaction that completes the run. The tree is stored as its
-- complete subtrees' hashes, (level, idx) covering leaves [idx * 2^level, (idx + 1) * 2^level),
-- so that any proof reads O(log n) rows.
CREATE TABLE transparency_logs (
    merchant_id  uuid PRIMARY KEY REFERENCES merchants (id),
    size         bigint NOT NULL DEFAULT 0 CHECK (size >= 0)
);

CREATE TABLE transparency_entries (
    merchant_id  uuid NOT NULL REFERENCES transparency_logs (merchant_id),
    idx          bigint NOT NULL CHECK (idx >= 0),
    run_id       uuid NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, idx),
    FOREIGN KEY (merchant_id, run_id) REFERENCES bundle_runs (merchant_id, id)
);

CREATE TABLE transparency_nodes (
    merchant_id  uuid NOT NULL REFERENCES transparency_logs (merchant_id),
    level        smallint NOT NULL CHECK (level BETWEEN 0 AND 63),
    idx          bigint NOT NULL CHECK (idx >= 0),
    hash         bytea NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (merchant_id, level, idx)
);

-- Signed checkpoints (C2SP tlog-checkpoint as a signed note), kept for auditors.
CREATE TABLE transparency_checkpoints (
    merchant_id  uuid NOT NULL REFERENCES transparency_logs (merchant_id),
    tree_size    bigint NOT NULL CHECK (tree_size >= 1),
    root_hash    bytea NOT NULL CHECK (length(root_hash) = 32),
    note         text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, tree_size)
);
