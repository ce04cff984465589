r"""ForwardGNN link prediction: a 2-layer GCN learns layer by layer to tell held-out edges of a planted graph.

Paper: "Forward Learning of Graph Neural Networks" (Park et al., ICLR 2024, arXiv 2403.11004), link prediction.
Procedure ``zoo.recipes.procedures.forward_gnn_link.ForwardGNNLink`` (variant ``'sf'``, the reference's FL-CE models:
each layer scores a node pair by the dot product of its own node embeddings and learns by binary cross-entropy,
the training edges as positives and sampled non-edges as negatives, on the stop-gradient of the layer below; 200
steps for layer 0, then 200 for layer 1; prediction: the mean of the layers' sigmoids). Model ``zoo.gnn.GNN`` (GCN,
64 hidden; its ``num_classes`` is unused). Data ``sbm_links``: 4 communities x 60 nodes, p_in 0.1, p_out 0.002,
noisy class-mean features; 16% / 20% of the edges held out for validation / test, one sampled non-edge per edge;
message passing over the training edges (training + validation edges for the test split). Other settings:
``--config.procedure.variant=ff`` (forward-forward goodness ``||z_u z_v||^2 - theta``),
``--config.procedure.learn_layers=False`` (the ablation: layers frozen at their initialisation).

Command::

  python -m zoo.recipes.train --config recipes/configs/forward_gnn_link_sbm.py --workdir /tmp/zoo-forward-gnn-link

Expected: test ROC-AUC 0.824 (seed 0; 0.803-0.863 over the graphs of seeds 0-2, ``--config.data.kwargs.seed=N
--config.seed=N``), against 0.824 for the same GCN trained with backprop (``gnn_backprop_link_sbm.py``) and 0.63-0.72
with the layers frozen (``learn_layers=False``). Time: ~6 s of CPU time (start-up and compilation included).
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
  c.procedure.name = "forward_gnn_link.ForwardGNNLink"
  c.procedure.variant = "sf"
  c.procedure.layer_steps = 200
  c.procedure.learn_layers = True
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.steps = 400
  c.log_every = 50
  c.eval_every = 200
  c.checkpoint_every = 100
  c.mesh.data = 1
  c.mesh.fsdp = 1
  c.mesh.tensor = -1
  c.seed = 0
  return c
