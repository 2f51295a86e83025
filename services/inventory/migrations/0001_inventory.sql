-- Stock per product, the history of every change to it, and the reservations made for orders.

-- One row per product the catalog ever announced. Stock can never go negative: the CHECKs hold
-- even if a bug slipped past the application's own checks.
CREATE TABLE inventory (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product_id         TEXT        NOT NULL UNIQUE,
    available_quantity INTEGER     NOT NULL CHECK (available_quantity >= 0),
    reserved_quantity  INTEGER     NOT NULL DEFAULT 0 CHECK (reserved_quantity >= 0),
    reorder_threshold  INTEGER     NOT NULL CHECK (reorder_threshold >= 0),
    -- Set when the product was deleted from the catalog: the record is hidden and sells nothing,
    -- but stays so that history, outstanding reservations and a late `product_created` event
    -- (which must not bring it back) all still find it.
    discontinued_at    TIMESTAMPTZ,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Serves `GET /api/v1/inventory/?low_stock=true` without scanning every product.
CREATE INDEX inventory_low_stock ON inventory (id)
    WHERE available_quantity <= reorder_threshold AND discontinued_at IS NULL;

-- Every change to a stock record, written in the same transaction as the change.
CREATE TABLE inventory_history (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product_id      TEXT        NOT NULL,
    available_delta INTEGER     NOT NULL,
    reserved_delta  INTEGER     NOT NULL,
    -- What caused the change.
    change          TEXT        NOT NULL CHECK (change IN (
                        'product_created', 'product_deleted', 'order_reserved', 'order_released', 'adjustment')),
    -- The caller's reason for an adjustment.
    reason          TEXT,
    -- The order behind a reservation or a release.
    order_id        TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX inventory_history_by_product ON inventory_history (product_id, id);

-- One row per order inventory has heard of, whichever of `order_created` and `inventory_release`
-- came first. The row is the lock that serialises everything done for one order, and its state
-- makes redelivered messages harmless:
--   pending   only ever inside the transaction that creates the row (it is inserted first so
--             that a concurrent message for the same order waits on it), never committed;
--   reserved  every line is held (reservation_lines says what);
--   failed    nothing was held; `reason` says why (sent as InventoryFailed);
--   released  the order was cancelled and what it held was given back;
--   cancelled the release arrived before the order: a later `order_created` reserves nothing.
CREATE TABLE reservations (
    order_id   TEXT        PRIMARY KEY,
    state      TEXT        NOT NULL CHECK (state IN ('pending', 'reserved', 'failed', 'released', 'cancelled')),
    reason     TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Exactly what a reservation holds, so that a release gives back exactly that.
CREATE TABLE reservation_lines (
    order_id   TEXT    NOT NULL REFERENCES reservations (order_id),
    product_id TEXT    NOT NULL,
    quantity   INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_id)
);
