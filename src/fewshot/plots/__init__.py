"""Pictures as PNG files (matplotlib, headless Agg backend)."""
import matplotlib

matplotlib.use("Agg")
