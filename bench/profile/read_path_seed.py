"""Seeds a running bench stack as make bench does (harness/seed.py): 8 products, 8
customers; writes OUT_DIR/products and OUT_DIR/tokens.

    python3 bench/profile/read_path_seed.py OUT_DIR
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from harness.seed import Api, Customers, seed  # noqa: E402
from harness.stack import Stack, parse_env  # noqa: E402

work = Path(sys.argv[1])
work.mkdir(parents=True, exist_ok=True)
st = Stack(ROOT, work)
st.env = parse_env(st.call("env", quiet=False).out)
api = Api(st.env["GATEWAY_URL"] + "/api/v1")
print(seed(st, api, Customers(api, work), work)[0])
