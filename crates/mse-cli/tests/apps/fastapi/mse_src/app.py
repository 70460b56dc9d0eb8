"""An ASGI API with FastAPI and pydantic models."""

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

app = FastAPI()
ITEMS = {}


class Item(BaseModel):
    name: str
    price: float


@app.get("/health")
def health():
    return {"status": "ok"}


@app.put("/items/{item_id}")
def put_item(item_id: int, item: Item):
    ITEMS[item_id] = item
    return {"id": item_id, "name": item.name, "price": item.price}


@app.get("/items/{item_id}")
def get_item(item_id: int):
    if item_id not in ITEMS:
        raise HTTPException(status_code=404, detail="no such item")
    item = ITEMS[item_id]
    return {"id": item_id, "name": item.name, "price": item.price}
