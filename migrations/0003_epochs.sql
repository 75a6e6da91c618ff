-- Room epochs: a room's seq numbers only name events within one epoch (a restore starts a new
-- one), so the index records the epoch of each room and snapshot.
ALTER TABLE rooms ADD COLUMN epoch TEXT NOT NULL DEFAULT '';
ALTER TABLE snapshots ADD COLUMN epoch TEXT NOT NULL DEFAULT '';
