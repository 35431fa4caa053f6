"""Federated simulation across machines on Flower (``flwr`` 1.42, Message API): one server process, one process
per hospital, only ``G_S``/``G_M`` updates travel.

* :mod:`~fedsim_tf.federation.flower.server_app` / :mod:`~fedsim_tf.federation.flower.client_app`: the
  ``ServerApp`` and ``ClientApp`` (the roles of :mod:`fedsim_tf.federation.roles`);
* :mod:`~fedsim_tf.federation.flower.protocol`: what travels, and the check of every reply a site sends;
* :mod:`~fedsim_tf.federation.flower.site`: a hospital's data and private state between rounds;
* :mod:`~fedsim_tf.federation.flower.server_command`, :mod:`~fedsim_tf.federation.flower.site_command`: the
  one command of the server and of each hospital; :mod:`~fedsim_tf.federation.flower.demo`: a local try-out;
* :mod:`~fedsim_tf.federation.flower.credentials`: TLS certificates and authentication keys for a try-out;
* :mod:`~fedsim_tf.federation.flower.privacy`: optional differential privacy of the shared update.
"""
