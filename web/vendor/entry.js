export { HttpAgent, Actor } from '@icp-sdk/core/agent';
export { IDL } from '@icp-sdk/core/candid';
