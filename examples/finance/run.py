"""Finance: daily returns of ten S&P 500 stocks -> next-week return forecasts.

Daily returns are close to unpredictable: the honest result is a model that does not beat the
zero/last-value baselines by much, if at all. The summary shows both side by side.
Run: python examples/finance/run.py [--quick]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import parse_args, run_example  # noqa: E402
from edgecomp.data import DataConfig  # noqa: E402
from edgecomp.train import TrainConfig  # noqa: E402

STOCKS = ("AAPL", "AMZN", "IBM", "INTC", "JNJ", "JPM", "KO", "MSFT", "WMT", "XOM")

if __name__ == "__main__":
    run_example(
        "finance",
        "sp500_10stocks_daily_returns.csv.gz",
        DataConfig(input_len=20, horizon=5, features=STOCKS),
        # returns have no persistence: forecast levels, not changes from the last value
        TrainConfig(epochs=30, patience=5, loss="mae", hparams={"residual": False}),
        parse_args("finance"),
        note="Daily stock returns are close to a random walk: compare the model with the baselines "
        "before reading anything into it.",
    )
