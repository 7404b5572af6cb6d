-- Kifly schema, PostgreSQL flavour (kept in step with ../sqlite). Times are Unix milliseconds; money is integer cents.

CREATE TABLE sellers (
    id                 TEXT PRIMARY KEY,
    handle             TEXT NOT NULL UNIQUE,
    name               TEXT NOT NULL,
    description        TEXT NOT NULL DEFAULT '',
    storefront_url     TEXT,
    tier               TEXT NOT NULL CHECK (tier IN ('purchasable', 'directory')),
    delivery_fee_cents BIGINT NOT NULL CHECK (delivery_fee_cents >= 0),
    coverage           TEXT,            -- JSON CoverageSpec; NULL = not configured
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);

CREATE TABLE products (
    id          TEXT PRIMARY KEY,
    seller_id   TEXT NOT NULL REFERENCES sellers (id),
    handle      TEXT NOT NULL,
    title       TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    category    TEXT NOT NULL DEFAULT '',
    brand       TEXT NOT NULL DEFAULT '',
    url         TEXT,
    images      TEXT NOT NULL DEFAULT '[]', -- JSON array of URLs
    position    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (seller_id, handle)
);
CREATE INDEX products_seller_position ON products (seller_id, position);

CREATE TABLE variants (
    id          TEXT PRIMARY KEY,
    product_id  TEXT NOT NULL REFERENCES products (id),
    sku         TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    options     TEXT NOT NULL DEFAULT '{}', -- JSON object
    price_cents BIGINT NOT NULL CHECK (price_cents > 0),
    inventory   BIGINT CHECK (inventory IS NULL OR inventory >= 0),
    position    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX variants_product ON variants (product_id, position);

CREATE TABLE api_keys (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    key_hash       TEXT NOT NULL UNIQUE,
    display_prefix TEXT NOT NULL,
    seller_id      TEXT REFERENCES sellers (id),
    scopes         TEXT NOT NULL, -- comma-separated
    created_at     BIGINT NOT NULL,
    revoked_at     BIGINT
);

CREATE TABLE platform_limits (
    id                   INTEGER PRIMARY KEY CHECK (id = 1),
    max_item_quantity    BIGINT NOT NULL,
    max_cart_total_cents BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);
INSERT INTO platform_limits (id, max_item_quantity, max_cart_total_cents, updated_at) VALUES (1, 20, 100000, 0);

CREATE TABLE carts (
    id               TEXT PRIMARY KEY,
    api_key_id       TEXT NOT NULL,
    seller_id        TEXT NOT NULL REFERENCES sellers (id),
    status           TEXT NOT NULL,
    shipping_address TEXT, -- JSON ShippingAddress
    version          BIGINT NOT NULL DEFAULT 1,
    order_id         TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);

CREATE TABLE cart_items (
    id         TEXT PRIMARY KEY,
    cart_id    TEXT NOT NULL REFERENCES carts (id) ON DELETE CASCADE,
    variant_id TEXT NOT NULL REFERENCES variants (id),
    quantity   BIGINT NOT NULL CHECK (quantity > 0),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (cart_id, variant_id)
);

CREATE TABLE idempotency_records (
    principal        TEXT NOT NULL,
    method           TEXT NOT NULL,
    path             TEXT NOT NULL,
    idem_key         TEXT NOT NULL,
    fingerprint      TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('in_flight', 'done')),
    claim_token      TEXT NOT NULL,
    lease_expires_at BIGINT NOT NULL,
    status           BIGINT,
    response_body    BYTEA,
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (principal, method, path, idem_key)
);
CREATE INDEX idempotency_created ON idempotency_records (created_at);

CREATE TABLE audit_log (
    id          TEXT PRIMARY KEY,
    api_key_id  TEXT NOT NULL,
    action      TEXT NOT NULL,
    resource_id TEXT,
    metadata    TEXT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX audit_created ON audit_log (created_at);
