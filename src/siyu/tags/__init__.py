"""Tags: customer labels and the customer-value models behind them (RFM, BG/NBD, Gamma-Gamma)."""
