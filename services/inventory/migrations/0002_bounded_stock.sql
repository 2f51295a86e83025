-- A record's whole stock (available + reserved) fits the columns' range. Adjustments are bounded
-- by it, so that a release, which moves units from reserved back to available and keeps the sum,
-- can never overflow: without it, stock adjusted near the integer limit made every later release
-- of that product fail and its orders' units stay reserved for good. NOT VALID: checked for every
-- row written from now on, without rescanning the table.
ALTER TABLE inventory
    ADD CONSTRAINT inventory_total_fits CHECK (available_quantity::bigint + reserved_quantity <= 2147483647) NOT VALID;
