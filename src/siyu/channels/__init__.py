"""Channel adapters behind one interface (``base.Channel``) and the outbox dispatcher.

``dispatcher.dispatch`` is the ``channels.outbox`` job of ``siyu worker``. WeCom delivery
(``wecom_*`` channels) comes with the WeCom connector; until then those rows stay pending.
"""
