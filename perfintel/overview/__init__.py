"""The overview: health scores, top anomalies and capacity risks, kept current in memory."""
