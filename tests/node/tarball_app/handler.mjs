// The pool's worker module of the app: answers with the worker that handled the message.
export async function onMessage(message, ctx) {
  await ctx.send(`${message.data} handled by ${ctx.workerId}`);
}
