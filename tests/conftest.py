import sys
from pathlib import Path

# The scripts and shared modules live at the repository root, flat, as researchers expect.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
