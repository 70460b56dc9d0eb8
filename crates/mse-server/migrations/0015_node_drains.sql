-- Drained nodes (`POST /nodes/{node}/drain`): nothing new is placed on
-- them and the apps the key service keeps move off them; until
-- `DELETE /nodes/{node}/drain`.
CREATE TABLE node_drains (
    node TEXT PRIMARY KEY,
    drained_at BIGINT NOT NULL
);
