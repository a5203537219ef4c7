// The chat page's entry module (index.html loads it): wires every part of the page, then signs
// in with a remembered key or shows the sign-in form.
//
// The parts, one module each: notice.js (errors), auth.js (sign-in/out), usage.js (credits),
// conversations.js (history sidebar), messages.js (the chat view), chat.js (model picker,
// composer, streaming), knowledge.js with store-files.js (the Knowledge panel), settings.js;
// state.js owns what the page holds, store.js what it remembers, api.js all HTTP, markdown.js
// safe rendering.

import { resumeSession, signOut, wireAuth } from "./auth.js";
import { wireChat } from "./chat.js";
import { wireConversations } from "./conversations.js";
import { wireKnowledge } from "./knowledge.js";
import { wireMessages } from "./messages.js";
import { onUnauthorized, wireNotice } from "./notice.js";
import { wireSettings } from "./settings.js";
import { wireUsage } from "./usage.js";

onUnauthorized((text) => signOut(text)); // the key no longer works
wireAuth();
wireNotice();
wireUsage();
wireSettings();
wireChat();
wireConversations();
wireMessages();
wireKnowledge();
resumeSession();
