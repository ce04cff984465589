r"""The backprop baseline of ForwardGNN: the same 2-layer GCN trained end to end on the planted-partition graph.

Model ``zoo.gnn.GNN`` (GCN, 64 hidden, 4 logits per node; Kipf & Welling 2017), task
``forward_gnn.NodeClassification`` (cross-entropy on the 20% labelled nodes), data ``sbm`` (as
``forward_gnn_sbm.py``). One graph per batch, so the mesh is all ``tensor`` (hidden units split over the devices).
``--config.model.conv=mlp`` gives the graph-free baseline, ``sage``/``gat`` the other layers. Data parallel over a
batch of graphs: see ``forward_gnn_sbm.py``.

Command::

  python -m zoo.recipes.train --config recipes/configs/gnn_backprop_sbm.py --workdir /tmp/zoo-gnn-bp

Expected: test accuracy 0.976 (seed 0; 0.935-0.976 over the graphs of seeds 0-4, ``--config.data.kwargs.seed=N
--config.seed=N``, mean 0.952); 0.58 with ``conv=mlp``. Time: ~5 s of CPU time (4-9 s wall on a loaded 2-core machine,
start-up and compilation included).
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
