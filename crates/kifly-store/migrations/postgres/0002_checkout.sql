-- Checkout (PostgreSQL flavour): orders, stock reservations, single-use payment proofs, webhook de-duplication and
-- tracked handoff links. Times are Unix milliseconds; money is integer cents.

-- Units held by orders awaiting payment. Available stock is `inventory - reserved`; a paid order
-- turns its reservation into a sale (both columns go down), a failed or expired one gives it back.
ALTER TABLE variants ADD COLUMN reserved BIGINT NOT NULL DEFAULT 0;

CREATE TABLE orders (
    id                 TEXT PRIMARY KEY,
    cart_id            TEXT NOT NULL REFERENCES carts (id),
    api_key_id         TEXT NOT NULL,
    seller_id          TEXT NOT NULL REFERENCES sellers (id),
    status             TEXT NOT NULL CHECK (status IN ('pending_payment', 'paid', 'shipped', 'delivered', 'failed', 'expired', 'cancelled')),
    payment_rail       TEXT NOT NULL,
    -- The provider's handle for the payment: Checkout Session id, Coinbase charge code, the MPP
    -- challenge id or the x402 nonce. Webhooks and order look-ups use it.
    session_id         TEXT NOT NULL UNIQUE,
    payment_url        TEXT,
    -- What settled it: PaymentIntent id, on-chain transaction hash.
    payment_reference  TEXT,
    -- While an agent-paid order (MPP, x402) is pending: what is needed to finish settling it after a
    -- crash or a provider timeout (the shared payment token / the signed x402 payload). Cleared as
    -- soon as the order leaves pending_payment.
    settlement_credential TEXT,
    lines              TEXT NOT NULL, -- JSON [OrderLine]
    subtotal_cents     BIGINT NOT NULL,
    delivery_fee_cents BIGINT NOT NULL,
    total_cents        BIGINT NOT NULL,
    currency           TEXT NOT NULL,
    shipping_address   TEXT NOT NULL, -- JSON ShippingAddress
    email              TEXT,
    expires_at         BIGINT,
    paid_at            BIGINT,
    shipped_at         BIGINT,
    carrier            TEXT,
    tracking_number    TEXT,
    tracking_url       TEXT,
    delivered_at       BIGINT,
    closed_at          BIGINT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX orders_cart ON orders (cart_id);
CREATE INDEX orders_pending_expiry ON orders (status, expires_at);

-- Provider events already applied (webhook de-duplication), and spent single-use payment proofs
-- (MPP challenge ids, x402 payer+nonce).
CREATE TABLE payment_events (
    source      TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    order_id    TEXT,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (source, event_id)
);

CREATE TABLE redirect_links (
    code       TEXT PRIMARY KEY,
    url        TEXT NOT NULL,
    cart_id    TEXT,
    clicks     BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
