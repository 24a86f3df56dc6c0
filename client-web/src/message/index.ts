/** Control messages and parameters (draft-18 §10); mirrors `banyan_moq::message`. */
export * from "./params";
export * from "./messages";
