r"""The backprop baseline of ForwardGNN link prediction: the same 2-layer GCN trained end to end on held-out edges.

Model ``zoo.gnn.GNN`` (GCN, 64 hidden, ReLU after both layers: the stack ``forward_gnn_link_sbm.py`` trains layer
by layer), task ``forward_gnn_link.LinkPrediction`` (binary cross-entropy of the dot product ``h_u . h_v``, training
edges vs sampled non-edges; ROC-AUC on the test pairs), data ``sbm_links`` as ``forward_gnn_link_sbm.py``.
``--config.model.num_classes=64`` gives PyG's form (no ReLU on the last layer, the reference's baseline);
``--config.model.conv=mlp`` the graph-free baseline.

Command::

  python -m zoo.recipes.train --config recipes/configs/gnn_backprop_link_sbm.py --workdir /tmp/zoo-gnn-bp-link

Expected: test ROC-AUC 0.824 (seed 0; 0.814-0.861 over the graphs of seeds 0-2, ``--config.data.kwargs.seed=N
--config.seed=N``). Time: ~5 s of CPU time.
"""

from zoo.recipes.configs import base_config


def get_config():
  c = base_config()
  c.model.name = "gnn.GNN"
  c.model.hidden_features = 64
  c.model.num_layers = 2
  c.model.conv = "gcn"
  c.data.name = "sbm_links"
  c.data.kwargs.seed = 0
  c.data.kwargs.p_in = 0.1
  c.data.kwargs.p_out = 0.002
  c.data.kwargs.num_graphs = 1
  c.data.batch_size = 1
  c.data.eval_batch_size = 1
  c.task.name = "forward_gnn_link.LinkPrediction"
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.steps = 200
  c.log_every = 50
  c.eval_every = 100
  c.checkpoint_every = 100
  c.mesh.data = 1
  c.mesh.fsdp = 1
  c.mesh.tensor = -1
  c.seed = 0
  return c
