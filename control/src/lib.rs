//! Control plane: multicast join engine, neighbour/path cache, port events.
