"""An application with no OpenTelemetry code: a Flask app answering "ok" on the port given."""
import sys

from flask import Flask

app = Flask(__name__)


@app.route("/")
def index():
    return "ok"


if __name__ == "__main__":
    print("listening", flush=True)
    app.run(host="127.0.0.1", port=int(sys.argv[1]))
