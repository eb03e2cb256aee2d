//! The library part of the testbed helper (`sdwan-testbed`): the convergence measurement
//! client of bench/convergence ([`measure`]).
#![deny(unsafe_code)]

pub mod measure;
