"""Payment platforms: WeChat Pay v3 and Alipay behind one interface, per-tenant channels, the flows."""
