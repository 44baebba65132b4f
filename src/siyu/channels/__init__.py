"""Channel adapters behind one interface (``base.Channel``), the outbox dispatcher, per-brand
channel settings and the dead letters (docs/channels.md).

- ``dispatcher.dispatch`` is the ``channels.outbox`` job of ``siyu worker``;
- ``config`` builds each brand's adapters from its settings (``models.ChannelSetting``) over
  the global ones; other packages add channels with ``config.register_channel`` (WeCom
  delivery, ``wecom_*``: until it registers, those rows stay pending);
- ``recipients`` resolves e-mail and SMS addresses from the PII vault at send time;
- ``actions`` / ``queries``: settings, outbox rows, state counts, retries.
"""
