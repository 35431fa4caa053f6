"""Federated training (paper Sec. 2.3, Fig. 2): shared variables updated by a server from one gradient
per site per round; each site's private state (GAN, codes, optimisers) stays on the site.

* :mod:`fedsim_tf.federation.roles`: the site and server roles as plain functions (any engine);
* :mod:`fedsim_tf.federation.devices`: one device per site, configured at program start;
* :mod:`fedsim_tf.federation.strategy`: the in-process engine on ``tf.distribute.MirroredStrategy``.
"""
