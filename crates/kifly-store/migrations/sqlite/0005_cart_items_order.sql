-- Cart lines in the order every cart read lists them (`ORDER BY i.created_at, i.id`), so the joined
-- cart read, the first read of every cart change, walks this index instead of sorting the lines in a
-- temporary B-tree. Quantity changes do not touch it (only adding or removing a line does).
-- PostgreSQL sorts the few lines of a cart in memory and keeps its own layout.
CREATE INDEX cart_items_cart_order ON cart_items (cart_id, created_at, id);
