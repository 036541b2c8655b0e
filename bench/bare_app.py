"""The baseline for HTTP figures: a bare Flask endpoint returning a small JSON body."""

from flask import Flask

app = Flask(__name__)


@app.post("/bare")
def bare():
    return {"user_id": "42", "target": "/tickets/1234"}
