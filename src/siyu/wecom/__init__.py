"""WeCom (企业微信) connector: callback crypto, API client, sync, inheritance, test double."""
