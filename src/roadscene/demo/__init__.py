"""`roadscene demo`: the whole system on a laptop CPU, offline, from nothing (see `run`)."""

from roadscene.demo.config import BAR, SUMMARY_FILE, DemoConfig, DemoResult
from roadscene.demo.run import run_demo

__all__ = ["BAR", "SUMMARY_FILE", "DemoConfig", "DemoResult", "run_demo"]
