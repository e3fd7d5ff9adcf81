-- Images and fonts a merchant uploads for its templates: content-addressed and immutable.
-- The bytes are in the bucket under merchants/<merchant>/assets/<sha256>, written before the
-- row, so a row always has its object.
CREATE TABLE assets (
    merchant_id  uuid NOT NULL REFERENCES merchants (id),
    sha256       text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    kind         text NOT NULL CHECK (kind IN ('png', 'jpeg', 'svg', 'webp', 'ttf', 'otf')),
    size_bytes   integer NOT NULL CHECK (size_bytes > 0),
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, sha256)
);
CREATE INDEX assets_by_merchant ON assets (merchant_id, created_at DESC, sha256 DESC);
CREATE TRIGGER assets_immutable
    BEFORE UPDATE OR DELETE ON assets
    FOR EACH ROW EXECUTE FUNCTION refuse_change();

-- The assets a version renders with, name -> sha256, pinned with the version.
ALTER TABLE configuration_versions
    ADD COLUMN assets jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(assets) = 'object');
