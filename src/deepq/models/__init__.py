"""Networks are plain nn.Modules: forward(x [B, L, F]) -> raw head parameters [B, n_outputs]."""
