//! Pure planning: cluster model + topology -> zone payload per gateway and proxy payload per worker.
