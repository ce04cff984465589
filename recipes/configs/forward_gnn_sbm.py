r"""ForwardGNN (single-forward, SF) trains a 2-layer GCN layer by layer on a planted-partition graph, no backprop.

Paper: "Forward Learning of Graph Neural Networks" (Park et al., ICLR 2024, arXiv 2403.11004). Procedure
``zoo.recipes.procedures.forward_gnn.ForwardGNN`` (variant ``'sf'``: one virtual node per class linked to the
labelled nodes; each layer learns by cross-entropy over its node-to-virtual-node similarities, on the stop-gradient
of the layer below; 200 steps for layer 0, then 200 for layer 1). Model ``zoo.gnn.GNN`` (GCN, 64 hidden). Data
``sbm``: 4 communities x 60 nodes, p_in 0.08, p_out 0.008, noisy class-mean features, 20% labelled. The whole graph
is one example (batch size 1), so the mesh puts every device on the ``tensor`` axis (hidden units split 8 ways on 8
devices) instead of data parallelism. Other variants: ``--config.procedure.variant=sf_top2input`` (top-down),
``ff_label_appending`` (forward-forward; use ``layer_steps=1000``), ``ff_virtual_nodes``, ``sf_top2loss``. The
ablation ``--config.procedure.learn_layers=False`` keeps every layer at its initialisation (0.726 on seed 0; see
``tests/papers/test_forward_gnn.py``). Link prediction: ``forward_gnn_link_sbm.py``.

Command::

  python -m zoo.recipes.train --config recipes/configs/forward_gnn_sbm.py --workdir /tmp/zoo-forward-gnn

A batch of graphs runs data parallel instead: ``--config.data.kwargs.num_graphs=8 --config.data.batch_size=8
--config.data.eval_batch_size=8 --config.mesh.data=-1 --config.mesh.tensor=1`` (8 SBM graphs with shared
community means, one per device; measured mean test accuracy 0.894, backprop 0.950).

Expected: test accuracy 0.923 (seed 0; 0.869-0.935 over the graphs of seeds 0-4, ``--config.data.kwargs.seed=N
--config.seed=N``, mean 0.901), against 0.976 for the same GCN trained with backprop (``gnn_backprop_sbm.py``, mean
0.952) and 0.58 for a graph-free MLP. Time: ~6.5 s of CPU time (9-14 s wall on a loaded 2-core machine, start-up and
compilation included).
"""

from zoo.recipes.configs import base_config


def get_config():
  c = base_config()
  c.model.name = "gnn.GNN"
  c.model.num_classes = 4
  c.model.hidden_features = 64
  c.model.num_layers = 2
  c.model.conv = "gcn"
  c.data.name = "sbm"
  c.data.kwargs.seed = 0
  c.data.kwargs.num_graphs = 1
  c.data.batch_size = 1
  c.data.eval_batch_size = 1
  c.task.name = "forward_gnn.NodeClassification"
  c.procedure.name = "forward_gnn.ForwardGNN"
  c.procedure.variant = "sf"
  c.procedure.layer_steps = 200
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
